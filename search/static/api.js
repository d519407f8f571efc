// Talking to the HTTP API: the key from localStorage, the query parameters of a search,
// and images fetched with the key (an <img src> cannot send a header).
"use strict";

export const PAGE = 24;
const KEY = "clipdex-key";

export function apiKey() { return localStorage.getItem(KEY) || ""; }
export function setApiKey(value) { localStorage.setItem(KEY, value); }
function headers() { return apiKey() ? { "X-API-Key": apiKey() } : {}; }

// Page field name -> how it goes to the API. Lists (formats, metadata) are repeated names.
const LISTS = { format: "format", metadata: "where" };
const KB = { min_kb: "min_bytes", max_kb: "max_bytes" };

function split(value) {
  return value.split(",").map((part) => part.trim()).filter(Boolean);
}

// "Taken until" a day includes that day: the API's taken_before is exclusive.
function dayAfter(value) {
  const day = new Date(`${value}T00:00:00Z`);
  if (Number.isNaN(day.getTime())) return value;
  day.setUTCDate(day.getUTCDate() + 1);
  return day.toISOString().slice(0, 10);
}

// The API's parameters for one search: options, mode, sort, page, and every filter set.
export function searchParams(state) {
  const params = new URLSearchParams({ limit: PAGE, offset: (state.page - 1) * PAGE });
  // Only words have a keyword side: an image or "more like this" is searched by meaning.
  if (state.kind === "text" && state.mode !== "vector") params.set("mode", state.mode);
  if (state.sort !== "relevance") params.set("sort", state.sort);
  for (const [name, value] of Object.entries(state.filters)) {
    if (name in LISTS) for (const part of split(value)) params.append(LISTS[name], part);
    else if (name in KB) params.set(KB[name], String(Math.round(Number(value) * 1024)));
    else if (name === "taken_before") params.set(name, dayAfter(value));
    else params.set(name, value);
  }
  return params;
}

async function answer(response) {
  let data = null;
  try { data = await response.json(); } catch { /* not JSON: say the status below */ }
  if (!response.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : `error ${response.status}`;
    throw new Error(detail);
  }
  return data;
}

// One page of hits for a text query, an asset ("more like this") or an image file.
export async function search(state) {
  const params = searchParams(state);
  if (state.kind === "text") {
    params.set("q", state.q);
    return answer(await fetch(`/v1/search?${params}`, { headers: headers() }));
  }
  if (state.kind === "similar") {
    const id = encodeURIComponent(state.similar);
    return answer(await fetch(`/v1/assets/${id}/similar?${params}`, { headers: headers() }));
  }
  const body = new FormData();
  body.append("file", state.file);
  for (const [name, value] of params) body.append(name, value);
  return answer(await fetch("/v1/search/image", { method: "POST", body, headers: headers() }));
}

export async function asset(id) {
  return answer(await fetch(`/v1/assets/${encodeURIComponent(id)}`, { headers: headers() }));
}

// An object URL for an image endpoint, or null when it cannot be shown.
export async function imageUrl(path) {
  const response = await fetch(path, { headers: headers() });
  const type = response.headers.get("content-type") || "";
  if (!response.ok || !/^image\/(jpeg|png|gif|webp|bmp|avif)/.test(type)) return null;
  return URL.createObjectURL(await response.blob());
}

export const thumbnailPath = (id, size) => `/v1/assets/${encodeURIComponent(id)}/thumbnail?size=${size}`;
export const originalPath = (id) => `/v1/assets/${encodeURIComponent(id)}/image`;
