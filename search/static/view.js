// Drawing: the grid of hits and the full-size view with the asset's details.
"use strict";

import { imageUrl, originalPath, thumbnailPath } from "./api.js";

const $ = (id) => document.getElementById(id);
let gridUrls = [];
let detailUrl = null;

// The name a person knows a hit by: an upload's original file name, else the file's own name.
export function nameOf(item) {
  if (item.name) return item.name;
  const path = item.path || (item.paths && item.paths[0]) || "";
  return path.split(/[\\/]/).pop() || item.id;
}

async function thumbnail(img, id) {
  const url = await imageUrl(thumbnailPath(id, 256));
  if (url === null) return;
  gridUrls.push(url);
  img.src = url;
}

function figure(hit, onOpen) {
  const item = document.createElement("figure");
  item.dataset.id = hit.id;
  const open = document.createElement("button");
  open.type = "button";
  open.className = "open";
  open.setAttribute("aria-label", `Open ${nameOf(hit)}`);
  open.addEventListener("click", () => onOpen(hit));
  const img = document.createElement("img");
  img.alt = nameOf(hit);
  thumbnail(img, hit.id);
  open.append(img);
  const caption = document.createElement("figcaption");
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = nameOf(hit);
  name.title = hit.path || "";
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);
  caption.append(name, score);
  if (hit.taken_at) {
    const taken = document.createElement("time");
    taken.className = "taken";
    taken.dateTime = hit.taken_at;
    taken.textContent = hit.taken_at.slice(0, 10);
    caption.append(taken);
  }
  item.append(open, caption);
  return item;
}

export function showHits(hits, onOpen) {
  for (const url of gridUrls) URL.revokeObjectURL(url);
  gridUrls = [];
  $("grid").replaceChildren(...hits.map((hit) => figure(hit, onOpen)));
}

export function clearHits() { showHits([], () => {}); }

function bytes(count) {
  if (count < 1024) return `${count} B`;
  if (count < 1024 * 1024) return `${(count / 1024).toFixed(1)} KB`;
  return `${(count / 1024 / 1024).toFixed(1)} MB`;
}

function withoutEmpty(record) {
  return Object.fromEntries(Object.entries(record).filter(([, value]) => value !== null && value !== undefined));
}

// Label and text of each detail the asset has; absent or empty ones are left out.
function facts(item, hit) {
  const camera = [item.camera_make, item.camera_model].filter(Boolean).join(" ");
  const meta = item.meta && typeof item.meta === "object"
    ? Object.entries(item.meta).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : v}`)
    : [];
  return [
    ["Name", nameOf({ ...item, name: item.name || (hit && hit.name) })],
    ["Score", hit && hit.id === item.id ? hit.score.toFixed(3) : null],
    ["Size", item.width && item.height ? `${item.width} × ${item.height}` : null],
    ["Orientation", item.orientation],
    ["Format", item.format],
    ["File size", typeof item.bytes === "number" ? bytes(item.bytes) : null],
    ["Taken", item.taken_at],
    ["Camera", camera],
    ["Description", item.description],
    ["Metadata", meta],
    ["Paths", item.paths],
    ["Index state", item.state],
    ["SHA-256", item.sha256],
  ].filter(([, value]) => value !== null && value !== undefined && value !== "" && !(Array.isArray(value) && !value.length));
}

// The asset's own record, completed by what the hit carried (name, metadata, camera...).
export function showFacts(record, hit) {
  const item = hit && hit.id === record.id ? { ...hit, ...withoutEmpty(record) } : record;
  const list = $("detail-facts");
  list.replaceChildren();
  for (const [label, value] of facts(item, hit)) {
    const term = document.createElement("dt");
    term.textContent = label;
    const detail = document.createElement("dd");
    detail.dataset.fact = label;
    for (const line of Array.isArray(value) ? value : [value]) {
      const part = document.createElement("div");
      part.textContent = line;
      detail.append(part);
    }
    list.append(term, detail);
  }
  $("detail-title").textContent = nameOf({ ...item, name: item.name || (hit && hit.name) });
}

// The original file where a browser can show it, else a large rendering of it.
export async function showImage(id) {
  if (detailUrl) URL.revokeObjectURL(detailUrl);
  const img = $("detail-image");
  img.removeAttribute("src");
  img.dataset.id = id;
  let url = await imageUrl(originalPath(id));
  img.dataset.source = "original";
  if (url === null) {
    url = await imageUrl(thumbnailPath(id, 1024));
    img.dataset.source = "rendering";
  }
  detailUrl = url;
  if (url !== null && img.dataset.id === id) img.src = url;
}

export function showStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}
