// Flotilla's pages: the few things that need a script. No inline script anywhere (the
// Content-Security-Policy allows scripts from /static only); everything works without it
// but the live order status.
(function () {
  "use strict";

  var FINAL = { CONFIRMED: true, CANCELLED: true, REFUNDED: true };
  var POLL_MS = 1000;

  // The order page: while the order is not final, ask its status every second and show
  // it (the element is aria-live, so a screen reader says the change).
  function followOrder(element) {
    var url = element.getAttribute("data-poll");
    var reason = document.getElementById("order-reason");
    function show(body) {
      element.setAttribute("data-status", body.status);
      element.textContent = body.status;
      element.className = "status status-" + String(body.status).toLowerCase();
      if (reason) {
        reason.textContent = body.reason ? "Reason: " + body.reason : "";
      }
    }
    function ask() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (response.status === 401) {
            window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
            return null;
          }
          return response.ok ? response.json() : null;
        })
        .then(function (body) {
          if (body && body.status) {
            show(body);
            if (FINAL[body.status]) {
              return;
            }
          }
          window.setTimeout(ask, POLL_MS);
        })
        .catch(function () {
          window.setTimeout(ask, POLL_MS);
        });
    }
    window.setTimeout(ask, POLL_MS);
  }

  // Forms that change something are sent once: the button is disabled after the first
  // submit (the idempotency key on the form makes a second one harmless anyway).
  function sendOnce(form) {
    form.addEventListener("submit", function () {
      var buttons = form.querySelectorAll("button[type=submit]");
      window.setTimeout(function () {
        for (var i = 0; i < buttons.length; i += 1) {
          buttons[i].disabled = true;
        }
      }, 0);
    });
  }

  // Back to a page from the browser's cache: its buttons work again.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) {
      var disabled = document.querySelectorAll("form.single-submit button[disabled]");
      for (var i = 0; i < disabled.length; i += 1) {
        disabled[i].disabled = false;
      }
    }
  });

  function start() {
    var status = document.getElementById("order-status");
    if (status && status.hasAttribute("data-poll") && !FINAL[status.getAttribute("data-status")]) {
      followOrder(status);
    }
    var forms = document.querySelectorAll("form.single-submit");
    for (var i = 0; i < forms.length; i += 1) {
      sendOnce(forms[i]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
