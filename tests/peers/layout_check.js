// Layout checks for the e-mail report, run by tests/report_chromium.rs in
// headless Chromium (--dump-dom): each case loads a page into a same-origin
// iframe of a given width, and the checks below run on what Chromium laid
// out. The verdict is written as JSON into <pre id="result"> for the Rust
// side to read from the dumped DOM.
//
// Checks, per page and width:
//  1. nothing is cut: no horizontal scroll (document no wider than the
//     viewport), no element past the right edge, and no element with
//     overflow hidden/clip whose content is larger than its box;
//  2. nothing overlaps: in every table, the boxes of text-bearing cells of
//     one row and of consecutive rows don't intersect, no cell's text runs
//     outside its cell, and no two cells' text rectangles intersect;
//  3. Chinese is shown with a real font: every distinct CJK character is
//     drawn on a canvas with its element's computed font and compared with
//     a code point that has no glyph anywhere (U+10FFFD): the same pixels
//     mean tofu (or nothing drawn at all);
//  4. e-mail safety, as a browser sees it: no script, image, SVG, form or
//     embedded element; no flex, grid or positioning; an inline style on
//     every element of the body but empty spacer cells.
'use strict';

const CJK = /[\u1100-\u115F\u2E80-\uA4CF\uAC00-\uD7A3\uF900-\uFAFF\uFE30-\uFE4F\uFF00-\uFF60\uFFE0-\uFFE6]/u;
const NO_GLYPH = '\u{10FFFD}';
const MAX_PROBLEMS = 40;

function describe(el) {
  const text = (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 48);
  return text ? `<${el.tagName.toLowerCase()}> "${text}"` : `<${el.tagName.toLowerCase()}>`;
}

function loadFrame(src, width) {
  return new Promise((resolve, reject) => {
    const f = document.createElement('iframe');
    f.setAttribute('scrolling', 'no');
    f.style.cssText = `width:${width}px;height:400px;border:0;display:block;`;
    f.onload = () => resolve(f);
    f.onerror = () => reject(new Error(`cannot load ${src}`));
    f.src = src;
    document.getElementById('frames').appendChild(f);
  });
}

function intersects(a, b, tolerance) {
  return Math.min(a.right, b.right) - Math.max(a.left, b.left) > tolerance &&
    Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > tolerance;
}

function textRects(doc, el) {
  const range = doc.createRange();
  range.selectNodeContents(el);
  return Array.from(range.getClientRects()).filter((r) => r.width > 0 && r.height > 0);
}

function checkCut(doc, win, vw, problems) {
  const sw = doc.documentElement.scrollWidth;
  if (sw > vw) {
    problems.push(`horizontal scroll: the document is ${sw} px wide in ${vw} px`);
    // Name the culprits: the tables that cannot get narrower than the
    // most (a table given width 0 takes its min-content width).
    const least = Array.from(doc.querySelectorAll('table')).map((t) => {
      const saved = t.style.width;
      t.style.width = '0px';
      const w = t.getBoundingClientRect().width;
      t.style.width = saved;
      return { t, w };
    });
    least.sort((a, b) => b.w - a.w);
    for (const { t, w } of least.slice(0, 4)) {
      problems.push(`a table no narrower than ${Math.round(w)} px: ${describe(t)}`);
    }
  }
  for (const el of doc.body.querySelectorAll('*')) {
    const cs = win.getComputedStyle(el);
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > vw + 1) {
      problems.push(`past the right edge (${Math.round(r.right)} > ${vw} px): ${describe(el)}`);
    }
    if (['hidden', 'clip'].includes(cs.overflowX) && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`content cut horizontally: ${describe(el)}`);
    }
    if (['hidden', 'clip'].includes(cs.overflowY) && el.scrollHeight > el.clientHeight + 1) {
      problems.push(`content cut vertically: ${describe(el)}`);
    }
    if (/(^|-)(flex|grid)$/.test(cs.display)) problems.push(`display:${cs.display}: ${describe(el)}`);
    if (cs.position !== 'static') problems.push(`position:${cs.position}: ${describe(el)}`);
    // <tbody> is the parser's, not the report's; an empty spacer cell of a
    // chart has nothing to style (and saves bytes of Gmail's budget).
    const spacer = el.tagName === 'TD' && el.childNodes.length === 0;
    if (!['BR', 'TBODY'].includes(el.tagName) && !spacer && !el.hasAttribute('style')) {
      problems.push(`no inline style: ${describe(el)}`);
    }
  }
  const banned = 'script,img,svg,canvas,iframe,object,embed,video,audio,link,form,input,button';
  for (const el of doc.querySelectorAll(banned)) problems.push(`not for e-mail: ${describe(el)}`);
}

function checkOverlap(doc, problems) {
  let cells = 0;
  for (const table of doc.querySelectorAll('table')) {
    let prev = [];
    for (const row of table.rows) {
      const current = Array.from(row.cells)
        .filter((c) => c.textContent.trim() !== '')
        .map((c) => ({ el: c, box: c.getBoundingClientRect(), text: textRects(doc, c) }));
      for (const c of current) {
        cells += 1;
        const out = c.text.find((t) => t.left < c.box.left - 1 || t.right > c.box.right + 1 ||
          t.top < c.box.top - 1 || t.bottom > c.box.bottom + 1);
        if (out) problems.push(`text runs outside its cell: ${describe(c.el)}`);
      }
      const pairs = [];
      for (let i = 0; i < current.length; i++) {
        for (let j = i + 1; j < current.length; j++) pairs.push([current[i], current[j]]);
      }
      for (const a of prev) for (const b of current) pairs.push([a, b]);
      for (const [a, b] of pairs) {
        if (a.el.contains(b.el) || b.el.contains(a.el)) continue;
        if (intersects(a.box, b.box, 1.5)) {
          problems.push(`cells overlap: ${describe(a.el)} / ${describe(b.el)}`);
        } else if (a.text.some((x) => b.text.some((y) => intersects(x, y, 0.5)))) {
          problems.push(`text overlaps: ${describe(a.el)} / ${describe(b.el)}`);
        }
      }
      prev = current;
    }
  }
  return cells;
}

function pixels(ctx, ch, font) {
  ctx.font = '10px serif';
  ctx.font = font;
  if (ctx.font === '10px serif' && font !== '10px serif') return null;
  ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
  ctx.fillStyle = '#000';
  ctx.textBaseline = 'alphabetic';
  ctx.fillText(ch, 8, 44);
  return ctx.getImageData(0, 0, ctx.canvas.width, ctx.canvas.height).data;
}

function same(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function checkGlyphs(doc, win, problems) {
  const seen = new Map();
  const walker = doc.createTreeWalker(doc.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const cs = win.getComputedStyle(node.parentElement);
    // The element's face at a size where glyphs are unmistakable.
    const font = `${cs.fontStyle} ${cs.fontWeight} 36px ${cs.fontFamily}`;
    for (const ch of node.data) {
      if (CJK.test(ch) && !seen.has(ch + '\u0000' + font)) {
        seen.set(ch + '\u0000' + font, { ch, font, el: node.parentElement });
      }
    }
  }
  const canvas = document.createElement('canvas');
  canvas.width = 56;
  canvas.height = 56;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const tofu = new Map();
  const chars = new Set();
  const missing = [];
  for (const { ch, font, el } of seen.values()) {
    chars.add(ch);
    if (!tofu.has(font)) tofu.set(font, pixels(ctx, NO_GLYPH, font));
    const ref = tofu.get(font);
    const got = pixels(ctx, ch, font);
    if (got === null || ref === null) {
      problems.push(`canvas rejects the font "${font}"`);
      continue;
    }
    const blank = got.every((v, i) => i % 4 !== 3 || v === 0);
    if (blank || same(got, ref)) missing.push(`U+${ch.codePointAt(0).toString(16).toUpperCase()} ${ch} in ${describe(el)}`);
  }
  for (const m of missing) problems.push(`no glyph (tofu): ${m}`);
  return { chars: chars.size, pairs: seen.size, missing: missing.length };
}

function checkFrame(frame, width) {
  const doc = frame.contentDocument;
  if (!doc || !doc.body) throw new Error('the report frame is not readable (same origin?)');
  const win = frame.contentWindow;
  // Grow the frame to its content: no vertical scrollbar takes width.
  for (let i = 0; i < 5; i++) {
    const h = doc.documentElement.scrollHeight;
    frame.style.height = `${h}px`;
    if (doc.documentElement.scrollHeight === h) break;
  }
  const problems = [];
  const vw = doc.documentElement.clientWidth;
  if (vw !== width) problems.push(`the viewport is ${vw} px, not ${width} px`);
  checkCut(doc, win, vw, problems);
  const cells = checkOverlap(doc, problems);
  const glyphs = checkGlyphs(doc, win, problems);
  const container = Array.from(doc.querySelectorAll('table'))
    .find((t) => (t.getAttribute('style') || '').includes('max-width'));
  return {
    viewport: vw,
    documentWidth: doc.documentElement.scrollWidth,
    height: doc.documentElement.scrollHeight,
    containerWidth: container ? container.getBoundingClientRect().width : null,
    cells,
    cjkChars: glyphs.chars,
    cjkChecked: glyphs.pairs,
    tofu: glyphs.missing,
    text: doc.body.innerText.length,
    literalScript: doc.body.textContent.includes('<script>'),
    problems: Array.from(new Set(problems)).slice(0, MAX_PROBLEMS),
    problemCount: new Set(problems).size,
  };
}

// cases: [{ src, width }]
async function runLayoutChecks(cases) {
  const out = document.getElementById('result');
  const results = [];
  try {
    for (const c of cases) {
      const frame = await loadFrame(c.src, c.width);
      results.push(Object.assign({ src: c.src, width: c.width }, checkFrame(frame, c.width)));
      frame.remove();
    }
    out.textContent = JSON.stringify({ done: true, results });
  } catch (e) {
    out.textContent = JSON.stringify({ done: true, error: String(e && e.stack || e), results });
  }
}
