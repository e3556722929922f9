// A drawing pad: pointer strokes (mouse, touch, pen) in white on black, as MNIST digits are,
// with undo and clear; `toBlob` gives the drawing scaled and centred as MNIST centres digits.

export function createPad(canvas, { lineWidth = 18 } = {}) {
  const ctx = canvas.getContext('2d');
  const strokes = [];
  let current = null;

  const redraw = () => {
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = '#fff';
    ctx.fillStyle = '#fff';
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.lineWidth = lineWidth;
    for (const s of strokes) {
      ctx.beginPath();
      ctx.moveTo(s[0].x, s[0].y);
      if (s.length === 1) ctx.arc(s[0].x, s[0].y, lineWidth / 2, 0, 2 * Math.PI);
      for (const p of s.slice(1)) ctx.lineTo(p.x, p.y);
      if (s.length === 1) ctx.fill();
      else ctx.stroke();
    }
  };
  const at = (event) => {
    const r = canvas.getBoundingClientRect();
    return { x: ((event.clientX - r.left) * canvas.width) / r.width, y: ((event.clientY - r.top) * canvas.height) / r.height };
  };
  canvas.addEventListener('pointerdown', (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    current = [at(event)];
    strokes.push(current);
    redraw();
  });
  canvas.addEventListener('pointermove', (event) => {
    if (!current) return;
    current.push(at(event));
    redraw();
  });
  const end = () => { current = null; };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  redraw();

  return {
    isEmpty: () => strokes.length === 0,
    undo() {
      strokes.pop();
      redraw();
    },
    clear() {
      strokes.length = 0;
      redraw();
    },
    /** The ink's bounding box scaled to 20/28 of a `size` square and centred (as MNIST). */
    toBlob(size = 112) {
      const img = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let [x0, y0, x1, y1] = [canvas.width, canvas.height, -1, -1];
      for (let y = 0; y < canvas.height; y++) {
        for (let x = 0; x < canvas.width; x++) {
          if (img[(y * canvas.width + x) * 4] > 0) {
            x0 = Math.min(x0, x); x1 = Math.max(x1, x);
            y0 = Math.min(y0, y); y1 = Math.max(y1, y);
          }
        }
      }
      const out = document.createElement('canvas');
      out.width = out.height = size;
      const o = out.getContext('2d');
      o.fillStyle = '#000';
      o.fillRect(0, 0, size, size);
      if (x1 >= 0) {
        const w = x1 - x0 + 1;
        const h = y1 - y0 + 1;
        const scale = (size * 20) / 28 / Math.max(w, h);
        o.drawImage(canvas, x0, y0, w, h, (size - w * scale) / 2, (size - h * scale) / 2, w * scale, h * scale);
      }
      return new Promise((resolve) => out.toBlob(resolve, 'image/png'));
    },
  };
}
