// How long a run will take, from timed steps: a step's time is measured between the progress
// messages after the first step (which also compiles shaders and starts workers), and scaled by
// the number of images (an upper bound on a GPU, which batches them).

export class Speed {
  #n = 0;          // images of the run that was timed
  #stepSec = null; // seconds per step of that run

  /** A timer for one run of `n` images: call `step(done)` on each progress message, then `end()`. */
  timer(n) {
    let first = null;
    let last = null;
    return {
      step: (done) => {
        const now = performance.now();
        if (first === null) first = { done, at: now };
        else last = { done, at: now };
      },
      end: () => {
        if (first && last && last.done > first.done) {
          this.#n = n;
          this.#stepSec = (last.at - first.at) / 1000 / (last.done - first.done);
        }
      },
    };
  }

  /** The expected seconds for `n` images in `steps` steps; null before a step was timed. */
  seconds(n, steps) {
    return this.#stepSec === null ? null : (this.#stepSec * steps * n) / this.#n;
  }

  /** "about 12 s for 4 images at 20 steps", or '' before a step was timed. */
  text(n, steps) {
    const s = this.seconds(n, steps);
    if (s === null) return '';
    const time = s < 1 ? 'under a second' : s < 90 ? `about ${Math.round(s)} s` : `about ${Math.round(s / 60)} min`;
    return `${time} for ${n} image${n === 1 ? '' : 's'} at ${steps} steps`;
  }
}
