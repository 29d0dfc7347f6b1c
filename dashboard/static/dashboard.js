// Confirmation before every action, one submission per click, "select all" on the jobs list,
// and live regions: every element with data-live and an id is refreshed from the page's own URL.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const button = event.submitter;
  const question = (button && button.dataset.confirm) || form.dataset.confirm;
  if (question && !window.confirm(question)) { event.preventDefault(); return; }
  if (form.dataset.sent) { event.preventDefault(); return; }  // a double click submits once
  form.dataset.sent = "1";
  if (button && button.name) {  // a disabled submitter is not sent: keep its value
    const hidden = document.createElement("input");
    hidden.type = "hidden"; hidden.name = button.name; hidden.value = button.value;
    form.appendChild(hidden);
  }
  form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
});
document.addEventListener("change", (event) => {
  if (!event.target.classList.contains("select-all")) return;
  const form = event.target.closest("form");
  form.querySelectorAll('input[name="ids"]').forEach((box) => { box.checked = event.target.checked; });
});
document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy");
  if (!button || !navigator.clipboard) return;
  navigator.clipboard.writeText(button.dataset.copy).then(() => {
    button.textContent = "copied";
    setTimeout(() => { button.textContent = "copy"; }, 1500);
  });
});

// ---- live regions ------------------------------------------------------------------------
const LIVE_KEY = "skyport-live";  // "off" in localStorage: paused (in every tab)
const live = { timer: null, busy: false };

function livePaused() { return window.localStorage.getItem(LIVE_KEY) === "off"; }

// A region's content without the per-render request ids, to tell a real change.
function signature(html) { return html.replace(/name="request_id" value="[^"]*"/g, ""); }

// A field the user changed (a ticked box, a chosen range, typed text) and not yet sent.
function changed(field) {
  if (field.type === "checkbox" || field.type === "radio") return field.checked !== field.defaultChecked;
  if (field.tagName === "SELECT") return [...field.options].some((o) => o.selected !== o.defaultSelected);
  return field.value !== field.defaultValue;
}

// A region the user is working in keeps its content: a changed field, a focused one.
function inUse(region) {
  if ([...region.querySelectorAll("input, select, textarea")].some(changed)) return true;
  return region.contains(document.activeElement) && document.activeElement.matches("input, select, textarea");
}

function swap(region, fresh) {
  if (signature(region.innerHTML) === signature(fresh.innerHTML) || inUse(region)) return;
  const open = [...region.querySelectorAll("details")].map((d) => d.open);
  region.innerHTML = fresh.innerHTML;
  region.querySelectorAll("details").forEach((d, i) => { if (open[i]) d.open = true; });
}

async function refresh() {
  if (live.busy || livePaused() || document.hidden) return;
  live.busy = true;
  try {
    const response = await fetch(window.location.href, { headers: { "X-Skyport-Live": "1" }, credentials: "same-origin" });
    if (!response.ok || response.redirected) { setStatus("stopped (reload the page)"); stopLive(); return; }
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    document.querySelectorAll("[data-live][id]").forEach((region) => {
      const fresh = doc.getElementById(region.id);
      if (fresh) swap(region, fresh);
    });
    setStatus("updated " + new Date().toLocaleTimeString());
  } catch (err) {
    setStatus("not reachable, retrying");
  } finally {
    live.busy = false;
  }
}

function setStatus(text) {
  const status = document.getElementById("live-status");
  if (status) status.textContent = text;
}

function stopLive() { if (live.timer) { clearInterval(live.timer); live.timer = null; } }

function showToggle() {
  const toggle = document.getElementById("live-toggle");
  if (!toggle) return;
  toggle.textContent = livePaused() ? "Resume live updates" : "Pause live updates";
  toggle.setAttribute("aria-pressed", livePaused() ? "true" : "false");
  if (livePaused()) setStatus("paused");
}

document.addEventListener("DOMContentLoaded", () => {
  if (!document.querySelector("[data-live][id]")) return;
  const bar = document.getElementById("live-bar");
  if (bar) bar.hidden = false;
  const every = Number(document.body.dataset.liveEveryMs || 3000);
  live.timer = setInterval(refresh, every);
  const toggle = document.getElementById("live-toggle");
  if (toggle) toggle.addEventListener("click", () => {
    window.localStorage.setItem(LIVE_KEY, livePaused() ? "on" : "off");
    showToggle();
    if (!livePaused()) refresh();
  });
  showToggle();
});
