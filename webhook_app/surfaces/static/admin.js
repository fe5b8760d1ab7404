// The operator page's only script: confirmations for actions, and refreshing the live part.
"use strict";

document.addEventListener("submit", function (event) {
  var message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});

// The live parts (each element with data-part) come back together from the live part's
// data-refresh address, each put in place by its name.
(function refreshLive() {
  var live = document.getElementById("live");
  if (!live) {
    return;
  }
  function place(html) {
    var fetched = document.createElement("template");
    fetched.innerHTML = html;
    fetched.content.querySelectorAll("[data-part]").forEach(function (part) {
      var here = document.querySelector('[data-part="' + part.getAttribute("data-part") + '"]');
      if (here) {
        here.innerHTML = part.innerHTML;
      }
    });
  }
  var every = 5000;
  function refresh() {
    fetch(live.getAttribute("data-refresh"), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.status === 401) {
          window.location.reload(); // the session ended: back to the log-in form
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          place(html);
          live.setAttribute("data-refreshed", new Date().toISOString());
        }
      })
      .catch(function () {})
      .then(function () {
        window.setTimeout(refresh, every);
      });
  }
  window.setTimeout(refresh, every);
})();
