// What every page's script shares (inlined into each page): building elements, and calling the
// API with the key of a stage that requires one (prod). The pages are public and hold no data;
// the key is asked for once, on the first call the stage refuses without it, kept for this
// browser tab only (sessionStorage) and sent as x-api-key on every call.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
  children.forEach((c) => node.append(c instanceof Node ? c : document.createTextNode(String(c))));
  return node;
}

function svgEl(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
  children.forEach((c) => node.append(c instanceof Node ? c : document.createTextNode(String(c))));
  return node;
}

const COUNT = new Intl.NumberFormat("en");

function percent(x) {
  return x === null || x === undefined ? "-" : `${Math.round(x * 100)}%`;
}

function utc(iso) {
  return new Date(iso).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

const API_KEY_ITEM = "voucher-selection.api-key";
let keyQuestion = null; // the one question on screen: every call refused meanwhile waits for it

function storedApiKey() {
  try {
    return sessionStorage.getItem(API_KEY_ITEM);
  } catch (err) { // storage disabled: the key is asked for again on the next refusal
    return null;
  }
}

async function refusedForKey(response) {
  if (response.status !== 403) return false;
  try {
    return (await response.clone().json()).error.code === "api_key_required";
  } catch (err) {
    return false;
  }
}

function askForApiKey(refused) {
  keyQuestion = keyQuestion || new Promise((resolve, reject) => {
    const input = el("input", {type: "password", id: "api-key-input", autocomplete: "off",
                               spellcheck: "false", required: ""});
    const cancel = el("button", {type: "button", class: "plain", id: "api-key-cancel"}, "Cancel");
    const form = el("form", {id: "api-key-form"},
      el("h2", {id: "api-key-title"}, "API key"),
      el("p", {}, "This stage of the API answers only with its key. It is kept for this browser " +
                  "tab until you close it, and sent with every call the page makes."),
      refused ? el("p", {class: "bad", role: "alert", id: "api-key-refused"},
                   "The API refused that key: check it and enter it again.") : "",
      el("label", {for: "api-key-input"}, "API key (x-api-key)"), input,
      el("div", {class: "actions"}, cancel, el("button", {type: "submit"}, "Use this key")));
    const dialog = el("dialog", {id: "api-key-dialog", "aria-labelledby": "api-key-title"}, form);
    const close = (key) => {
      dialog.close();
      dialog.remove();
      keyQuestion = null;
      if (key) {
        try { sessionStorage.setItem(API_KEY_ITEM, key); } catch (err) { /* kept nowhere */ }
        resolve(key);
      } else {
        reject(new Error("this stage of the API needs its key, and none was given"));
      }
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (input.value.trim()) close(input.value.trim());
    });
    cancel.addEventListener("click", () => close(null));
    dialog.addEventListener("cancel", (event) => { event.preventDefault(); close(null); });
    document.body.append(dialog);
    dialog.showModal();
  });
  return keyQuestion;
}

// fetch(path, init) with the tab's key; a refusal for want of a (valid) key asks for one, then
// calls again. Rejects when the reader declines to give a key.
async function callApi(path, init = {}) {
  for (;;) {
    const key = storedApiKey();
    const headers = new Headers(init.headers || {});
    if (key) headers.set("x-api-key", key);
    const response = await fetch(path, {...init, headers});
    if (!(await refusedForKey(response))) return response;
    if (storedApiKey() === key) await askForApiKey(key !== null); // else another call just set it
  }
}

// A JSON answer: {ok, status, body}; an error answer's body is {"error": {...}}.
async function callApiJson(path, init) {
  const response = await callApi(path, init);
  return {ok: response.ok, status: response.status, body: await response.json()};
}
