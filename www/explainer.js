// explainer.html's math: the text of each .math element is TeX, typeset in place by KaTeX
// (vendored by `make vendor`); .math.display is a displayed equation.
// katex.render builds DOM nodes and sets their styles through the CSSOM, which a strict
// style-src allows; renderToString's HTML would carry style attributes that such a policy blocks.
import katex from './vendor/katex/katex.mjs';

const PUNCTUATION = /^[,.;:)]+/;

for (const el of document.querySelectorAll('.math')) {
  const tex = el.textContent;
  const displayMode = el.classList.contains('display');
  try {
    katex.render(tex, el, { throwOnError: true, displayMode });
  } catch (err) {
    // The TeX source stays readable where it failed; the console names it for the author.
    console.error(`explainer.js: cannot typeset ${JSON.stringify(tex)}: ${err.message}`);
    continue;
  }
  // A line may break between KaTeX's boxes and the text after them, which would start a line
  // with the comma that ends a formula: keep such punctuation on the formula's line.
  const next = el.nextSibling;
  const punctuation = !displayMode && next?.nodeType === Node.TEXT_NODE && PUNCTUATION.exec(next.data)?.[0];
  if (punctuation) {
    next.data = next.data.slice(punctuation.length);
    const keep = document.createElement('span');
    keep.className = 'nowrap';
    el.replaceWith(keep);
    keep.append(el, punctuation);
  }
}

// An equation wider than the column scrolls sideways (explainer.css); a keyboard can scroll it
// only if it can take focus, and only those that scroll should add a Tab stop.
const displays = [...document.querySelectorAll('.katex-display')];
function focusWide() {
  for (const d of displays) {
    if (d.scrollWidth > d.clientWidth) d.tabIndex = 0;
    else d.removeAttribute('tabindex');
  }
}
addEventListener('resize', focusWide);
document.fonts.ready.then(focusWide);
focusWide();
document.documentElement.dataset.math = 'typeset';
