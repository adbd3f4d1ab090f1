"use strict";
/* The options form: values in storage.local; values the admin set in managed
 * storage are shown and locked. Saving a server address outside 127.0.0.1 and
 * localhost asks the browser for permission to reach it. */
const api = typeof browser !== "undefined" ? browser : chrome;
const DEFAULTS = { mode: "agent", agentUrl: "http://127.0.0.1:5600", serverUrl: "", deviceToken: "", intervalSeconds: 30 };
const form = document.getElementById("form");
const statusLine = document.getElementById("status");

function show(text, ok) {
  statusLine.textContent = text;
  statusLine.className = ok ? "good" : "bad";
}

function checkUrl(value, name) {
  if (!value) return "";
  let url;
  try {
    url = new URL(value);
  } catch (e) {
    throw new Error(name + " is not a URL: " + value);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(name + " must start with http:// or https://: " + value);
  return url.origin;
}

async function load() {
  const values = await api.storage.local.get(DEFAULTS);
  let managed = {};
  try { managed = await api.storage.managed.get(null); } catch (e) { managed = {}; }
  const all = Object.assign({}, values, managed);
  for (const input of form.querySelectorAll("input[name=mode]")) input.checked = input.value === all.mode;
  for (const name of ["agentUrl", "serverUrl", "deviceToken", "intervalSeconds"]) form.elements[name].value = all[name];
  for (const name of Object.keys(managed)) {
    for (const el of form.querySelectorAll("[name=" + name + "]")) el.disabled = true;
    document.getElementById("managed").hidden = false;
  }
  const last = (await api.storage.local.get("lastStatus")).lastStatus;
  if (last) show((last.ok ? "Last report: " : "Last report failed: ") + last.message + " (" + last.at + ")", last.ok);
  document.body.dataset.loaded = "yes"; // the form shows the stored values
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const mode = form.querySelector("input[name=mode]:checked");
    const interval = Number(form.elements.intervalSeconds.value);
    if (!Number.isInteger(interval) || interval < 30 || interval > 600) throw new Error("seconds between reports must be 30 to 600: " + form.elements.intervalSeconds.value);
    const values = {
      mode: mode ? mode.value : "agent",
      agentUrl: form.elements.agentUrl.value.trim() || DEFAULTS.agentUrl,
      serverUrl: form.elements.serverUrl.value.trim(),
      deviceToken: form.elements.deviceToken.value.trim(),
      intervalSeconds: interval,
    };
    checkUrl(values.agentUrl, "agent address");
    const origin = checkUrl(values.serverUrl, "server address");
    if (values.mode === "server") {
      if (!origin || !values.deviceToken) throw new Error("server mode needs a server address and a device token");
      const host = new URL(origin).hostname;
      if (host !== "127.0.0.1" && host !== "localhost") {
        const granted = await api.permissions.request({ origins: [origin + "/*"] });
        if (!granted) throw new Error("the browser did not allow reaching " + origin);
      }
    }
    await api.storage.local.set(values);
    show("Saved.", true);
  } catch (e) {
    show(String((e && e.message) || e), false);
  }
});

load();
