// assay workbench: single-key shortcuts (WCAG 2.1.4: off inside text fields, can be turned
// off), the `?` help and `e` to start a ruling. Everything here has a no-JavaScript path.
(function () {
  "use strict";
  var STORE = "assay-shortcuts";
  function enabled() {
    try { return localStorage.getItem(STORE) !== "off"; } catch (e) { return true; }
  }
  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName) && !/^(radio|checkbox|button|submit)$/.test(target.type || ""));
  }
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && typing(e.target)) { e.target.blur(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing || typing(e.target)) return;
    var help = document.getElementById("help");
    if (e.key === "?") {
      e.preventDefault();
      if (help.open) help.close(); else help.showModal();
      return;
    }
    if (!enabled() || (help && help.open)) return;
    var focus = document.querySelector('[data-focus-key="' + e.key + '"]');
    if (focus) { e.preventDefault(); focus.focus(); return; }
    var target = document.querySelector('[data-key="' + e.key + '"]');
    if (!target) return;
    e.preventDefault();
    if (target.type === "radio") { target.checked = true; target.focus(); return; }
    target.click();
  });
  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.getElementById("shortcuts-toggle");
    if (toggle) {
      toggle.checked = enabled();
      toggle.addEventListener("change", function () {
        try { localStorage.setItem(STORE, toggle.checked ? "on" : "off"); } catch (e) { /* private mode */ }
      });
    }
    var heading = document.getElementById("focus");
    if (heading) heading.focus({ preventScroll: true });
  });
})();
