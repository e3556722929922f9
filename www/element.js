// What the embeddable elements (<ddpm-demo>: embed.js, <ddpm-schedule>: schedule.js,
// <ddpm-forward>: forward.js) share: the colours (CSS variables, light and dark), styles that a
// strict style-src allows, and a small element maker.

/** The :host's colours; each element's CSS follows it. */
export const THEME = `
:host { display: block; font: 14px/1.4 system-ui, sans-serif; max-width: 100%;
  --fg: #1c1c1e; --bg: #fff; --line: #d9d9d6; --muted: #5f5f63; --accent: #2f5bd3; --on-accent: #fff; --bad-bg: #fdecec; --bad-fg: #8a1c1c; }
@media (prefers-color-scheme: dark) {
  :host { --fg: #ececec; --bg: #1f1f22; --line: #4a4a50; --muted: #b0b0b8; --accent: #8aa6ff; --on-accent: #0c0c10; --bad-bg: #3b1a1a; --bad-fg: #ffb4b4; }
}
.error { background: var(--bad-bg); color: var(--bad-fg); border: 1px solid currentColor; border-radius: 6px; padding: 6px 8px; overflow-wrap: anywhere; }
[hidden] { display: none !important; }
`;

/** THEME and `css` on a shadow root. */
export function styles(root, css) {
  try {
    const sheet = new CSSStyleSheet();  // not blocked by a strict style-src, unlike <style>
    sheet.replaceSync(THEME + css);
    root.adoptedStyleSheets = [sheet];
  } catch {
    const style = document.createElement('style');
    style.textContent = THEME + css;
    root.append(style);
  }
}

/** A new element: `props` set as properties where the element has them, else as attributes. */
export function make(tag, props = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k in e) e[k] = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}
