/* global document, Node */
// Tiny DOM helpers: the page builds its views from plain elements, never from HTML strings (no injection by a trace's text).

/**
 * h('div', { class: 'x', onclick: fn, 'aria-label': 'y' }, child, 'text', [more]) → an element.
 * `class`, `text`, `on*` handlers, boolean attributes (true/false) and `style` objects are understood; null children are skipped.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') element.className = value;
    else if (name === 'text') element.textContent = value;
    else if (name === 'style') for (const [property, v] of Object.entries(value)) element.style.setProperty(property, v);
    else if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name in element && typeof value !== 'string') element[name] = value;
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's children. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

/** Seconds as a person reads them: 0.42 s, 12.3 s, 2 min 5 s. */
export function seconds(value) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '–';
  if (value < 10) return `${value.toFixed(2)} s`;
  if (value < 120) return `${value.toFixed(1)} s`;
  return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

/** A reward as text: 1, 0.5, or – when there is none. */
export function rewardText(reward) {
  return typeof reward === 'number' ? String(Math.round(reward * 1000) / 1000) : '–';
}

/** good / partial / bad / none, for colouring a reward. */
export function rewardTone(reward) {
  if (typeof reward !== 'number') return 'none';
  if (reward >= 1) return 'good';
  if (reward <= 0) return 'bad';
  return 'partial';
}

export function localTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso ?? '') : date.toLocaleString();
}
