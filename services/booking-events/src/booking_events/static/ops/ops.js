// Progressive enhancement of the ops console: live figures over Server-Sent Events.
// Every page is complete without this file. A section with data-stream="<url>" receives
// `fields` events ({"<name>": "<text>"}) and each element with data-field="<name>" shows
// the new text (a <progress> takes it as its value); an element with data-show="<name>" is
// hidden while that field is empty (a table's spare rows); a `done` event ends the stream.
"use strict";

(function () {
  const sections = document.querySelectorAll("[data-stream]");
  if (!sections.length || !window.EventSource) {
    return;
  }
  sections.forEach(function (section) {
    const source = new EventSource(section.dataset.stream);
    const live = section.querySelectorAll(".live");
    const liveOff = section.querySelectorAll(".live-off");

    source.addEventListener("open", function () {
      live.forEach(function (el) { el.hidden = false; });
      liveOff.forEach(function (el) { el.hidden = true; });
    });
    source.addEventListener("fields", function (event) {
      const fields = JSON.parse(event.data);
      section.querySelectorAll("[data-field]").forEach(function (el) {
        const name = el.dataset.field;
        if (!Object.prototype.hasOwnProperty.call(fields, name)) {
          return;
        }
        const text = String(fields[name]);
        if (el.tagName === "PROGRESS") {
          el.value = Number(text);
          el.textContent = text + " %";
        } else {
          el.textContent = text;
          if (el.hasAttribute("hidden") || el.classList.contains("notice")) {
            el.hidden = text === "";
          }
        }
      });
      section.querySelectorAll("[data-show]").forEach(function (el) {
        const name = el.dataset.show;
        if (Object.prototype.hasOwnProperty.call(fields, name)) {
          el.hidden = String(fields[name]) === "";
        }
      });
    });
    source.addEventListener("done", function () {
      source.close(); // finished on purpose: do not reconnect
      live.forEach(function (el) { el.hidden = true; });
    });
  });
})();
