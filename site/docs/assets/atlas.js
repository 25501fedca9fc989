/* Meta-Learning Atlas: the papers explorer (filters, sorting, shareable URL) and BibTeX copy buttons.
   Plain JavaScript, no dependencies, nothing fetched from the network. The table works without it. */
(function () {
  "use strict";

  var MULTI = ["framework", "type", "modality", "topic"]; // a paper may carry several of these labels
  var SINGLE = ["venue", "year", "code", "reproduced"]; // one value per paper

  function compact(text) {
    return text.replace(/[^0-9a-z\u00c0-\uffff]+/g, "");
  }

  function setupExplorer(root) {
    var tbody = root.querySelector("tbody");
    var rows = Array.prototype.slice.call(tbody.rows);
    var chips = Array.prototype.slice.call(root.querySelectorAll("button[data-facet]"));
    var selects = Array.prototype.slice.call(root.querySelectorAll("select[data-facet]"));
    var text = root.querySelector("input[data-text]");
    var count = root.querySelector("[data-count]");
    var empty = root.querySelector("[data-empty]");
    var clear = root.querySelector("[data-clear]");
    var sorters = Array.prototype.slice.call(root.querySelectorAll("button[data-sort]"));
    var form = root.querySelector("form");
    var more = root.querySelector("[data-more]");
    var sort = { key: "", dir: "" };
    // Only this many matching rows are laid out at a time: a table of 10,000 rows would take the
    // browser seconds to lay out on every change. "Show more" raises the limit.
    var pageSize = parseInt(root.dataset.pageSize, 10) || 250;
    var limit = pageSize;

    // Read each row's values once; filtering then touches no DOM attribute.
    var data = rows.map(function (row, index) {
      var item = { row: row, index: index, text: row.dataset.text || "" };
      item.compact = compact(item.text); // "meta-sgd" is found by "metasgd" and "meta sgd" alike
      MULTI.forEach(function (f) {
        item[f] = (row.dataset[f] || "").split(" ").filter(Boolean);
      });
      SINGLE.concat(["date", "title"]).forEach(function (f) {
        item[f] = row.dataset[f] || "";
      });
      return item;
    });
    var ordered = data.slice(); // data in the order the table shows it

    // What each column sorts by: a value, not the text of its cell. A header whose button names an order
    // (data-order="official community none") sorts by rank in it; the others by text, ignoring case.
    var sortValues = {};
    sorters.forEach(function (button) {
      var key = button.dataset.sort;
      var order = (button.dataset.order || "").split(" ").filter(Boolean);
      sortValues[key] = data.map(function (item) {
        var value = item[key];
        if (order.length) {
          var rank = order.indexOf(value);
          return rank < 0 ? order.length : rank;
        }
        return key === "date" ? value : value.toLowerCase();
      });
    });
    var collator = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });

    function chosen() {
      var state = { text: text.value.trim().toLowerCase() };
      MULTI.forEach(function (f) {
        state[f] = [];
      });
      chips.forEach(function (chip) {
        if (chip.getAttribute("aria-pressed") === "true") state[chip.dataset.facet].push(chip.dataset.value);
      });
      selects.forEach(function (sel) {
        state[sel.dataset.facet] = sel.value;
      });
      return state;
    }

    function matches(item, state) {
      for (var i = 0; i < MULTI.length; i++) {
        var wanted = state[MULTI[i]];
        for (var j = 0; j < wanted.length; j++) {
          if (item[MULTI[i]].indexOf(wanted[j]) < 0) return false;
        }
      }
      for (var k = 0; k < SINGLE.length; k++) {
        var value = state[SINGLE[k]];
        if (value && item[SINGLE[k]] !== value) return false;
      }
      if (state.text) {
        var words = state.text.split(/\s+/);
        for (var w = 0; w < words.length; w++) {
          if (item.text.indexOf(words[w]) < 0 && item.compact.indexOf(compact(words[w]) || "\u0000") < 0) return false;
        }
      }
      return true;
    }

    function apply() {
      var state = chosen();
      var shown = 0;
      var perChip = {};
      var visibleRows = document.createDocumentFragment();
      ordered.forEach(function (item) {
        var ok = matches(item, state);
        var visible = ok && shown < limit;
        if (item.row.hidden === visible) item.row.hidden = !visible;
        if (visible) visibleRows.appendChild(item.row);
        if (!ok) return;
        shown += 1;
        MULTI.forEach(function (f) {
          item[f].forEach(function (v) {
            perChip[f + ":" + v] = (perChip[f + ":" + v] || 0) + 1;
          });
        });
      });
      // Only the shown rows need to be in order: they move to the end of the table, the hidden stay put.
      tbody.appendChild(visibleRows);
      // Each chip shows how many of the matching rows carry its label.
      chips.forEach(function (chip) {
        var n = perChip[chip.dataset.facet + ":" + chip.dataset.value] || 0;
        chip.querySelector(".mla-chip__count").textContent = String(n);
        chip.classList.toggle("mla-chip--zero", n === 0 && chip.getAttribute("aria-pressed") !== "true");
      });
      var total = data.length;
      var matching = shown === total ? total + " papers" : shown + " of " + total + " papers";
      count.textContent = shown > limit ? matching + " (showing the first " + limit + ")" : matching;
      empty.hidden = shown !== 0;
      more.hidden = shown <= limit;
      var active = state.text || chips.some(isPressed) || selects.some(function (s) { return s.value; });
      clear.hidden = !active;
      writeUrl(state);
    }

    function isPressed(chip) {
      return chip.getAttribute("aria-pressed") === "true";
    }

    function order() {
      ordered = data.slice();
      if (sort.key) {
        var sign = sort.dir === "descending" ? -1 : 1;
        var values = sortValues[sort.key];
        ordered.sort(function (a, b) {
          var x = values[a.index], y = values[b.index];
          var c = typeof x === "number" ? x - y : collator.compare(x, y);
          return c ? sign * c : a.index - b.index;
        });
      }
      sorters.forEach(function (button) {
        var th = button.closest("th");
        th.setAttribute("aria-sort", button.dataset.sort === sort.key ? sort.dir : "none");
      });
    }

    function writeUrl(state) {
      var params = new URLSearchParams();
      if (state.text) params.set("text", text.value.trim());
      MULTI.forEach(function (f) {
        if (state[f].length) params.set(f, state[f].join(","));
      });
      SINGLE.forEach(function (f) {
        if (state[f]) params.set(f, state[f]);
      });
      if (sort.key) params.set("sort", (sort.dir === "descending" ? "-" : "") + sort.key);
      var query = params.toString();
      var url = window.location.pathname + (query ? "?" + query : "") + window.location.hash;
      if (url !== window.location.pathname + window.location.search + window.location.hash) {
        window.history.replaceState(null, "", url);
      }
    }

    function readUrl() {
      var params = new URLSearchParams(window.location.search);
      text.value = params.get("text") || "";
      chips.forEach(function (chip) {
        var values = (params.get(chip.dataset.facet) || "").split(",");
        chip.setAttribute("aria-pressed", values.indexOf(chip.dataset.value) >= 0 ? "true" : "false");
      });
      selects.forEach(function (sel) {
        var value = params.get(sel.dataset.facet) || "";
        var known = Array.prototype.some.call(sel.options, function (o) { return o.value === value; });
        sel.value = known ? value : "";
      });
      var s = params.get("sort") || "";
      sort.key = s.replace(/^-/, "");
      sort.dir = sort.key ? (s.charAt(0) === "-" ? "descending" : "ascending") : "";
      if (sorters.every(function (b) { return b.dataset.sort !== sort.key; })) sort.key = sort.dir = "";
    }

    function refilter() {
      limit = pageSize;
      apply();
    }

    chips.forEach(function (chip) {
      chip.addEventListener("click", function () {
        chip.setAttribute("aria-pressed", isPressed(chip) ? "false" : "true");
        refilter();
      });
    });
    selects.forEach(function (sel) {
      sel.addEventListener("change", refilter);
    });
    text.addEventListener("input", refilter);
    more.addEventListener("click", function () {
      limit += pageSize;
      apply();
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
    });
    clear.addEventListener("click", function () {
      text.value = "";
      chips.forEach(function (chip) {
        chip.setAttribute("aria-pressed", "false");
      });
      selects.forEach(function (sel) {
        sel.value = "";
      });
      refilter();
      text.focus();
    });
    // The whole header cell sorts (a click on its padding too); Enter or Space on the button reaches it as a click.
    sorters.forEach(function (button) {
      button.closest("th").addEventListener("click", function () {
        if (sort.key === button.dataset.sort) {
          sort.dir = sort.dir === "ascending" ? "descending" : "ascending";
        } else {
          sort.key = button.dataset.sort;
          sort.dir = sort.key === "date" ? "descending" : "ascending";
        }
        order();
        refilter();
      });
    });
    readUrl();
    // On a phone the label chips fold away unless the URL chose some.
    var facets = root.querySelector("details.mla-facets");
    if (facets && window.matchMedia("(max-width: 45em)").matches && !chips.some(isPressed)) facets.open = false;
    order();
    apply();
    root.dataset.ready = "true";
  }

  function setupCopyButtons() {
    Array.prototype.forEach.call(document.querySelectorAll("button[data-copy]"), function (button) {
      button.addEventListener("click", function () {
        var source = document.getElementById(button.dataset.copy);
        var label = button.textContent;
        function done(message) {
          button.textContent = message;
          window.setTimeout(function () {
            button.textContent = label;
          }, 1500);
        }
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(source.textContent).then(function () { done("Copied"); }, function () { done("Copy failed"); });
        } else {
          // Plain-HTTP fallback: select the text so Ctrl+C works.
          var range = document.createRange();
          range.selectNodeContents(source);
          var selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          done(document.execCommand && document.execCommand("copy") ? "Copied" : "Press Ctrl+C");
        }
      });
    });
  }

  // A link to one record (#record-...) opens its row on a paper page.
  function openTargetRecord() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    var target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS" && !target.open) {
      target.open = true;
      target.scrollIntoView();
    }
  }

  function init() {
    var root = document.getElementById("mla-explorer");
    if (root && !root.dataset.ready) setupExplorer(root);
    setupCopyButtons();
    openTargetRecord();
    window.addEventListener("hashchange", openTargetRecord);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
