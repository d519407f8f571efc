// The results page: one state, written to the URL (shareable; the back button walks it) and
// read back from it on load and on popstate.
"use strict";

import { PAGE, apiKey, asset, search, setApiKey } from "./api.js";
import { clearHits, nameOf, showFacts, showHits, showImage, showStatus } from "./view.js";

const $ = (id) => document.getElementById(id);
const EMPTY = { kind: null, q: "", similar: null, fileId: null, mode: "vector", sort: "relevance", page: 1, filters: {}, view: null };
const files = new Map(); // fileId -> File: image queries live in this tab's history only
let state = { ...EMPTY };
let shownKey = null; // the search the grid shows (or is loading)
let request = 0;
const hits = new Map(); // id -> hit of the page shown, for the details' score and name

const filterInputs = () => [...$("filters").querySelectorAll("[name]")];

// A checkbox counts when ticked (its value is what the API gets), any other field when filled.
const valueOf = (input) => (input.type === "checkbox" ? (input.checked ? input.value : "") : input.value.trim());

function readFilters() {
  const filters = {};
  for (const input of filterInputs()) if (valueOf(input)) filters[input.name] = valueOf(input);
  return filters;
}

function fillFilter(input) {
  const value = state.filters[input.name] || "";
  if (input.type === "checkbox") input.checked = value !== "";
  else input.value = value;
}

function fillForm() {
  $("query").value = state.kind === "text" ? state.q : "";
  $("mode").value = state.mode;
  $("sort").value = state.sort;
  for (const input of filterInputs()) fillFilter(input);
  const count = Object.keys(state.filters).length;
  $("filter-count").textContent = count ? `(${count})` : "";
  if (count) $("filter-panel").open = true;
}

function urlOf(next) {
  const params = new URLSearchParams();
  if (next.kind === "text") params.set("q", next.q);
  if (next.kind === "similar") params.set("similar", next.similar);
  if (next.kind === "image") params.set("image", String(next.fileId));
  if (next.mode !== EMPTY.mode) params.set("mode", next.mode);
  if (next.sort !== EMPTY.sort) params.set("sort", next.sort);
  for (const [name, value] of Object.entries(next.filters)) params.set(name, value);
  if (next.page > 1) params.set("page", String(next.page));
  if (next.view) params.set("view", next.view);
  const query = params.toString();
  return query ? `?${query}` : location.pathname;
}

function stateOf(url) {
  const params = new URL(url).searchParams;
  const next = { ...EMPTY, filters: {} };
  if (params.get("q")) Object.assign(next, { kind: "text", q: params.get("q") });
  else if (params.get("similar")) Object.assign(next, { kind: "similar", similar: params.get("similar") });
  else if (params.get("image")) Object.assign(next, { kind: "image", fileId: Number(params.get("image")) });
  next.mode = params.get("mode") || EMPTY.mode;
  next.sort = params.get("sort") || EMPTY.sort;
  next.page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
  next.view = params.get("view");
  for (const input of filterInputs()) if (params.get(input.name)) next.filters[input.name] = params.get(input.name);
  return next;
}

const searchKey = (s) => JSON.stringify([s.kind, s.q, s.similar, s.fileId, s.mode, s.sort, s.page, s.filters]);

// Move to a new state: a new history entry (or the current one replaced), then show it.
function navigate(changes, replace = false) {
  const next = { ...state, ...changes };
  const url = urlOf(next);
  const entry = { view: next.view, pushed: !replace };
  if (replace || url === (location.search || location.pathname)) history.replaceState(entry, "", url);
  else history.pushState(entry, "", url);
  apply(next);
}

function apply(next) {
  state = next;
  fillForm();
  if (state.kind && searchKey(state) !== shownKey) run();
  if (!state.kind) { shownKey = null; clearHits(); showStatus(""); pager(null); }
  if (state.view) openDetail(state.view);
  else if ($("detail").open) $("detail").close();
}

async function run() {
  shownKey = searchKey(state);
  const mine = ++request;
  const query = { ...state, file: files.get(state.fileId) };
  if (query.kind === "image" && !query.file) {
    clearHits();
    pager(null);
    showStatus("That image search is gone with the page it ran in: choose or drop the image again.", true);
    return;
  }
  showStatus("Searching…");
  try {
    const data = await search(query);
    if (mine !== request) return; // a newer search has started: this answer is stale
    hits.clear();
    for (const hit of data.hits) hits.set(hit.id, hit);
    showHits(data.hits, (hit) => navigate({ view: hit.id }));
    // No total when counting would cost more than the search: say "10+" while more follow.
    const count = typeof data.total === "number" ? data.total : data.hits.length;
    const shown = typeof data.total !== "number" && data.has_more ? `${count}+` : `${count}`;
    showStatus(`${shown} result${count === 1 && shown === "1" ? "" : "s"} · ${data.model}`);
    pager(data);
  } catch (error) {
    if (mine !== request) return;
    clearHits();
    pager(null);
    showStatus(error.message, true);
  }
}

function pager(data) {
  const more = !data ? false : typeof data.has_more === "boolean" ? data.has_more : data.hits.length >= PAGE;
  $("page").textContent = data ? `page ${state.page}` : "";
  $("prev").disabled = !data || state.page <= 1;
  $("next").disabled = !more;
}

async function openDetail(id) {
  const dialog = $("detail");
  if (!dialog.open) dialog.showModal();
  dialog.dataset.id = id;
  showImage(id);
  $("detail-facts").replaceChildren();
  $("detail-title").textContent = hits.has(id) ? nameOf(hits.get(id)) : "";
  try {
    const item = await asset(id);
    if (dialog.dataset.id === id) showFacts(item, hits.get(id));
  } catch (error) {
    if (dialog.dataset.id === id) $("detail-title").textContent = error.message;
  }
}

function closed() {
  if (!state.view) return; // closed by the history: nothing to record
  if (history.state && history.state.pushed && history.state.view === state.view) history.back();
  else navigate({ view: null }, true);
}

function searchImage(file) {
  if (file.type && !file.type.startsWith("image/")) {
    showStatus(`${file.name} is not an image`, true);
    return;
  }
  const fileId = Date.now();
  files.set(fileId, file);
  navigate({ kind: "image", fileId, q: "", similar: null, page: 1, view: null });
}

function submitted(event) {
  event.preventDefault();
  const q = $("query").value.trim();
  const form = { mode: $("mode").value, sort: $("sort").value, filters: readFilters(), page: 1, view: null };
  if (q) navigate({ ...form, kind: "text", q, similar: null, fileId: null });
  else if (state.kind && state.kind !== "text") navigate(form);
  else showStatus("Type what to look for, or choose an image.", true);
}

function refined() {
  if (!state.kind) return;
  navigate({ mode: $("mode").value, sort: $("sort").value, filters: readFilters(), page: 1, view: null });
}

function dropping(event) {
  if (!event.dataTransfer || ![...event.dataTransfer.types].includes("Files")) return;
  event.preventDefault();
  $("drop-zone").hidden = false;
}

function dropped(event) {
  event.preventDefault();
  $("drop-zone").hidden = true;
  const file = event.dataTransfer && event.dataTransfer.files[0];
  if (file) searchImage(file);
}

$("api-key").value = apiKey();
$("api-key").addEventListener("change", () => { setApiKey($("api-key").value); shownKey = null; apply(state); });
$("search-form").addEventListener("submit", submitted);
$("mode").addEventListener("change", refined);
$("sort").addEventListener("change", refined);
$("filters").addEventListener("change", refined);
$("clear-filters").addEventListener("click", () => {
  for (const input of filterInputs()) if (input.type === "checkbox") input.checked = false; else input.value = "";
  refined();
});
$("image-file").addEventListener("change", () => { if ($("image-file").files.length) searchImage($("image-file").files[0]); });
$("prev").addEventListener("click", () => navigate({ page: state.page - 1, view: null }));
$("next").addEventListener("click", () => navigate({ page: state.page + 1, view: null }));
$("detail-close").addEventListener("click", () => $("detail").close());
$("detail").addEventListener("close", closed);
$("more-like-this").addEventListener("click", () => {
  navigate({ kind: "similar", similar: $("detail").dataset.id, q: "", fileId: null, page: 1, view: null });
});
document.addEventListener("dragenter", dropping);
document.addEventListener("dragover", dropping);
document.addEventListener("dragleave", (event) => { if (!event.relatedTarget) $("drop-zone").hidden = true; });
document.addEventListener("drop", dropped);
window.addEventListener("popstate", () => apply(stateOf(location.href)));
apply(stateOf(location.href));
