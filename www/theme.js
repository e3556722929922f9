// What the page's elements (<ddpm-demo>, <ddpm-forward>) share in their shadow DOM: the colours,
// light and dark, and a way to apply a style sheet that a strict Content-Security-Policy allows.

export const THEME = `:host { display: block; font: 14px/1.4 system-ui, sans-serif; max-width: 100%;
  --fg: #1c1c1e; --bg: #fff; --line: #d9d9d6; --muted: #5f5f63; --accent: #2f5bd3; --on-accent: #fff; --bad-bg: #fdecec; --bad-fg: #8a1c1c; }
@media (prefers-color-scheme: dark) {
  :host { --fg: #ececec; --bg: #1f1f22; --line: #4a4a50; --muted: #b0b0b8; --accent: #8aa6ff; --on-accent: #0c0c10; --bad-bg: #3b1a1a; --bad-fg: #ffb4b4; }
}
`;

/** Applies `css` to a shadow root: as a constructed sheet, which a strict style-src does not
 *  block (unlike <style>), or as <style> where constructed sheets are missing. */
export function adoptStyles(root, css) {
  try {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    root.adoptedStyleSheets = [sheet];
  } catch {
    const style = document.createElement('style');
    style.textContent = css;
    root.append(style);
  }
}
