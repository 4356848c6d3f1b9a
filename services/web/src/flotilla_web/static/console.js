// The operator console's live parts: the system table (/console) and the scaling page
// (/console/scaling) ask their JSON every 2 seconds while the tab is visible, and update
// the page in place. Text goes in with textContent only (names come from the system and
// are not trusted as HTML); no inline script or style (the CSP forbids both).
(function () {
  "use strict";

  var POLL_MS = 2000;

  function setText(id, text) {
    var element = document.getElementById(id);
    if (element) {
      element.textContent = text;
    }
  }

  function showNotice(id, text) {
    var element = document.getElementById(id);
    if (!element) {
      return;
    }
    element.textContent = text || "";
    element.hidden = !text;
  }

  // Ask `url` every POLL_MS while the page is visible; `apply` gets each JSON body,
  // `trouble` a message when the console itself cannot be reached. Hidden tab: no
  // requests; visible again: one at once, then the rhythm again.
  function poll(url, apply, trouble) {
    var timer = null;
    var asking = false;
    var stopped = false;

    function schedule() {
      if (!stopped && !document.hidden && timer === null && !asking) {
        timer = window.setTimeout(ask, POLL_MS);
      }
    }

    function ask() {
      timer = null;
      asking = true;
      fetch(url, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store"
      })
        .then(function (response) {
          if (response.status === 401) {
            stopped = true;
            window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
            return null;
          }
          if (response.status === 403) {
            stopped = true;
            trouble("Your account may no longer read the console.");
            return null;
          }
          if (!response.ok) {
            trouble("The console answered " + response.status + "; trying again.");
            return null;
          }
          return response.json();
        })
        .then(function (body) {
          if (body) {
            apply(body);
          }
        })
        .catch(function () {
          trouble("The console could not be reached; trying again.");
        })
        .then(function () {
          asking = false;
          schedule();
        });
    }

    document.addEventListener("visibilitychange", function () {
      if (document.hidden) {
        if (timer !== null) {
          window.clearTimeout(timer);
          timer = null;
        }
      } else if (timer === null && !asking && !stopped) {
        ask();
      }
    });
    schedule();
  }

  function cell(row, fieldName, className) {
    var found = null;
    for (var i = 0; i < row.cells.length; i += 1) {
      if (row.cells[i].getAttribute("data-field") === fieldName) {
        found = row.cells[i];
      }
    }
    if (found === null) {
      found = document.createElement("td");
      found.setAttribute("data-field", fieldName);
      if (className) {
        found.className = className;
      }
      row.appendChild(found);
    }
    return found;
  }

  function dash(value) {
    return value === null || value === undefined ? "\u2013" : String(value);
  }

  function fillInstance(row, instance) {
    row.setAttribute("data-instance", instance.name);
    row.setAttribute("data-service", instance.service);
    row.setAttribute("data-ready", instance.ready ? "true" : "false");
    cell(row, "service").textContent = instance.service;
    cell(row, "name", "id").textContent = instance.name;
    cell(row, "shard").textContent = dash(instance.shard);
    var ready = cell(row, "ready");
    var state = ready.firstElementChild;
    if (!state) {
      state = document.createElement("span");
      ready.appendChild(state);
    }
    state.className = "state " + (instance.ready ? "state-ready" : "state-down");
    state.textContent = instance.ready ? "ready" : "not ready";
    cell(row, "in_flight", "num").textContent = dash(instance.in_flight);
    cell(row, "requests_per_s", "num").textContent = instance.requests_per_s;
    cell(row, "p99_ms", "num").textContent = instance.p99_ms;
    cell(row, "error_rate", "num").textContent = instance.error_rate;
  }

  // The system table: each instance's row updated where it is, new ones added, gone
  // ones removed, in the order of the answer.
  function followSystem(table) {
    var body = table.tBodies[0];
    function key(service, name) {
      return service + "\u0000" + name;
    }
    function apply(picture) {
      setText("system-gateway", picture.gateway || "\u2013");
      setText("system-updated", picture.at_text);
      setText("system-window", picture.window_text);
      showNotice("system-unavailable", picture.available ? "" : picture.reason);
      if (!picture.available) {
        return;
      }
      var rows = new Map();
      for (var i = 0; i < body.rows.length; i += 1) {
        var row = body.rows[i];
        rows.set(key(row.getAttribute("data-service"), row.getAttribute("data-instance")), row);
      }
      picture.instances.forEach(function (instance) {
        var k = key(instance.service, instance.name);
        var found = rows.get(k) || document.createElement("tr");
        rows.delete(k);
        fillInstance(found, instance);
        body.appendChild(found); // moves an existing row into the answer's order
      });
      rows.forEach(function (gone) {
        body.removeChild(gone);
      });
    }
    poll(table.getAttribute("data-poll"), apply, function (message) {
      showNotice("system-unavailable", message);
    });
  }

  function fillBody(table, items, build) {
    if (!table) {
      return;
    }
    var body = table.tBodies[0];
    while (body.firstChild) {
      body.removeChild(body.firstChild);
    }
    items.forEach(function (item) {
      body.appendChild(build(item));
    });
  }

  function row(attributes, texts) {
    var tr = document.createElement("tr");
    Object.keys(attributes).forEach(function (name) {
      tr.setAttribute(name, attributes[name]);
    });
    texts.forEach(function (text) {
      var td = document.createElement("td");
      if (text && typeof text === "object") {
        td.className = text.className;
        td.textContent = text.text;
      } else {
        td.textContent = text;
      }
      tr.appendChild(td);
    });
    return tr;
  }

  // The scaling page: instance counts, requests waiting, answers.
  function followScaling(section) {
    function apply(view) {
      showNotice("scale-unavailable", view.available ? "" : view.reason);
      showNotice("scale-picture-unavailable", view.picture_reason);
      var stale = document.getElementById("scale-stale");
      if (stale) {
        stale.hidden = !view.stale;
      }
      fillBody(document.getElementById("scale-counts"), view.groups, function (g) {
        return row({ "data-group": g.group }, [
          { className: "id", text: g.group },
          { className: "num", text: String(g.instances) },
          { className: "num", text: String(g.ready) }
        ]);
      });
      fillBody(document.getElementById("scale-pending"), view.pending, function (p) {
        var service = p.service + (p.shard === null ? "" : " (shard " + p.shard + ")");
        return row({ "data-request": p.id }, [
          { className: "id", text: p.id },
          service,
          { className: "num", text: String(p.instances) },
          { className: "num", text: Math.round(p.age_s) + " s" }
        ]);
      });
      fillBody(document.getElementById("scale-answered"), view.answered, function (a) {
        var tr = row({ "data-request": a.id, "data-ok": a.ok ? "true" : "false" }, [
          { className: "id", text: a.id },
          a.answered_text,
          "",
          a.detail
        ]);
        var state = document.createElement("span");
        state.className = "state " + (a.ok ? "state-ready" : "state-down");
        state.textContent = a.ok ? "done" : "refused";
        tr.cells[2].appendChild(state);
        return tr;
      });
    }
    poll(section.getAttribute("data-poll"), apply, function (message) {
      showNotice("scale-unavailable", message);
    });
  }

  function start() {
    var instances = document.getElementById("instances");
    if (instances && instances.hasAttribute("data-poll")) {
      followSystem(instances);
    }
    var scaling = document.getElementById("scaling");
    if (scaling && scaling.hasAttribute("data-poll")) {
      followScaling(scaling);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
