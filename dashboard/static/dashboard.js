// Confirmation before every action, one submission per click, and "select all" on the jobs list.
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
