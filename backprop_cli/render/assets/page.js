/* The step-through of a backprop-cli page. It only shows numbers the report holds (the
   JSON in script.bp-data): it never computes a value or a gradient itself. */
(function () {
  "use strict";

  function all(root, selector) {
    return Array.prototype.slice.call(root.querySelectorAll(selector));
  }

  function setup(root) {
    root.setAttribute("data-bp-ready", "");
    var source = root.querySelector("script.bp-data");
    if (!source) return;
    var data = JSON.parse(source.textContent);
    var steps = data.steps || [];
    var count = steps.length;
    var at = 0;
    var timer = null;
    var selected = null;
    var printing = null;

    function button(action) {
      return root.querySelector('button[data-action="' + action + '"]');
    }

    function mark(selector, name, on) {
      all(root, selector).forEach(function (el) {
        el.classList.toggle(name, on);
      });
    }

    function reveal(el) {
      // a graph wider than its box (on a phone) scrolls sideways to the step's node or wire
      var box = el && el.closest(".bp-scroll");
      if (!box || box.scrollWidth <= box.clientWidth) return;
      var r = el.getBoundingClientRect();
      var b = box.getBoundingClientRect();
      if (r.left < b.left || r.right > b.right) {
        box.scrollLeft += (r.left + r.right) / 2 - (b.left + b.right) / 2;
      }
    }

    // Every node's and wire's elements, found once: a step then touches each of them once.
    var byNode = {};
    Object.keys(data.nodes || {}).forEach(function (id) {
      var els = all(root, '[data-node="' + id + '"]');
      byNode[id] = {
        els: els,
        values: all(root, '[data-node="' + id + '"] .bp-live-value'),
        grads: all(root, '[data-node="' + id + '"] .bp-live-grad'),
      };
    });
    var wires = all(root, ".bp-edge");

    function show() {
      var seen = {};
      var sofar = {};
      var contributed = {};
      for (var j = 0; j < at; j++) {
        var step = steps[j];
        if (step.kind === "forward") {
          seen[step.node] = true;
        } else {
          sofar[step.input] = step.total;
          contributed[step.edge] = true;
        }
      }
      // the backward pass has begun (or, with no wire to walk, the walk is over): the
      // output holds its seed gradient
      var backward = at > data.forward_count || (count > 0 && at === count);
      Object.keys(byNode).forEach(function (id) {
        var info = data.nodes[id];
        var found = byNode[id];
        var grad = sofar[id];
        if (grad === undefined && backward && id === String(data.output)) grad = data.seed;
        var final = grad !== undefined && (info.last === null ? backward : at >= info.last);
        var value = seen[id] ? info.value : "";
        found.els.forEach(function (el) {
          el.classList.toggle("bp-computed", seen[id] === true);
          el.classList.toggle("bp-has-grad", grad !== undefined);
          el.classList.toggle("bp-final", final);
        });
        found.values.forEach(function (el) {
          if (el.textContent !== value) el.textContent = value;
        });
        var text = grad === undefined ? "" : grad;
        found.grads.forEach(function (el) {
          if (el.textContent !== text) el.textContent = text;
        });
      });
      wires.forEach(function (el) {
        el.classList.toggle("bp-done", contributed[el.getAttribute("data-edge")] === true);
      });
      mark(".bp-current", "bp-current", false);
      mark(".bp-from", "bp-from", false);
      mark(".bp-to", "bp-to", false);
      var now = root.querySelector(".bp-now");
      var current = at > 0 ? steps[at - 1] : null;
      if (current && current.kind === "forward") {
        mark('[data-node="' + current.node + '"]', "bp-current", true);
        reveal(root.querySelector('.bp-node[data-node="' + current.node + '"]'));
      } else if (current) {
        mark('.bp-edge[data-edge="' + current.edge + '"]', "bp-current", true);
        mark('[data-node="' + current.node + '"]', "bp-from", true);
        mark('[data-node="' + current.input + '"]', "bp-to", true);
        reveal(root.querySelector('.bp-edge[data-edge="' + current.edge + '"]'));
      }
      if (now) {
        now.textContent = current ? current.say : data.start;
        now.setAttribute("data-step", String(at));
        now.setAttribute("data-kind", current ? current.kind : "start");
        now.setAttribute("data-edge", current && current.edge ? current.edge : "");
      }
      var counter = root.querySelector(".bp-count");
      if (counter) {
        var phase = !current ? "" : current.kind === "forward" ? " · forward" : " · backward";
        counter.textContent = "Step " + at + " of " + count + phase;
      }
      var prev = button("prev");
      var next = button("next");
      var reset = button("reset");
      var had = document.activeElement;
      if (prev) prev.disabled = at === 0;
      if (next) next.disabled = at === count;
      if (reset) reset.disabled = at === 0;
      if (had && had.disabled) {
        // a button that has just been disabled keeps no focus: hand it to the way back
        var other = had === next ? prev : next;
        if (other && !other.disabled) other.focus();
      }
    }

    function go(to) {
      at = Math.max(0, Math.min(count, to));
      show();
    }

    function stop() {
      if (timer !== null) {
        clearInterval(timer);
        timer = null;
      }
      var play = button("play");
      if (play) {
        play.textContent = "Play";
        play.setAttribute("aria-pressed", "false");
      }
    }

    function play() {
      if (timer !== null) {
        stop();
        return;
      }
      if (at === count) go(0);
      var playing = button("play");
      if (playing) {
        playing.textContent = "Pause";
        playing.setAttribute("aria-pressed", "true");
      }
      timer = setInterval(function () {
        if (at >= count) stop();
        else go(at + 1);
      }, data.interval || 700);
    }

    // The wires and nodes on the paths from the output down to a node: every wire leaving
    // it or a node that uses it, up to the output (every node drawn is one the output
    // depends on). A walk over the drawing, not arithmetic.
    var users = {};
    var wireById = {};
    wires.forEach(function (el) {
      wireById[el.getAttribute("data-edge")] = el;
      var from = el.getAttribute("data-from");
      (users[from] = users[from] || []).push(el);
    });

    function cone(id) {
      var seen = {};
      var edges = [];
      var todo = [String(id)];
      seen[id] = true;
      while (todo.length) {
        (users[todo.pop()] || []).forEach(function (el) {
          edges.push(el.getAttribute("data-edge"));
          var to = el.getAttribute("data-to");
          if (!seen[to]) {
            seen[to] = true;
            todo.push(to);
          }
        });
      }
      return { edges: edges, nodes: Object.keys(seen) };
    }

    function select(id) {
      mark(".bp-selected", "bp-selected", false);
      mark(".bp-on-path", "bp-on-path", false);
      all(root, ".bp-detail").forEach(function (el) {
        el.hidden = true;
      });
      var empty = root.querySelector(".bp-detail-empty");
      if (id === null || id === selected) {
        selected = null;
        if (empty) empty.hidden = false;
        return;
      }
      selected = id;
      if (empty) empty.hidden = true;
      mark('[data-node="' + id + '"]', "bp-selected", true);
      var on = cone(id);
      on.edges.forEach(function (edge) {
        if (wireById[edge]) wireById[edge].classList.add("bp-on-path");
      });
      on.nodes.forEach(function (node) {
        (byNode[node] ? byNode[node].els : []).forEach(function (el) {
          if (el.classList.contains("bp-node")) el.classList.add("bp-on-path");
        });
      });
      var detail = root.querySelector('.bp-detail[data-detail="' + id + '"]');
      if (detail) detail.hidden = false;
    }

    var actions = {
      prev: function () { stop(); go(at - 1); },
      next: function () { stop(); go(at + 1); },
      play: play,
      reset: function () { stop(); go(0); },
      end: function () { stop(); go(count); },
    };
    all(root, "button[data-action]").forEach(function (el) {
      el.addEventListener("click", function () {
        actions[el.getAttribute("data-action")]();
      });
    });
    all(root, "[data-select]").forEach(function (el) {
      el.addEventListener("click", function (event) {
        event.preventDefault();
        select(el.getAttribute("data-select"));
      });
      el.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          select(el.getAttribute("data-select"));
        }
      });
    });
    all(root, "button[data-clear]").forEach(function (el) {
      el.addEventListener("click", function () { select(null); });
    });

    function keys(event) {
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      var tag = event.target && event.target.tagName;
      if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
      if (event.target && event.target.isContentEditable) return;
      var key = { ArrowRight: "next", ArrowLeft: "prev", Home: "reset", End: "end" }[event.key];
      if (key) {
        event.preventDefault();
        actions[key]();
      } else if (event.key === "Escape" && selected !== null) {
        select(null);
      }
    }
    // A page of its own takes the arrow keys anywhere; one among others (a notebook's
    // output) only while it has the focus.
    var target = root.hasAttribute("data-bp-standalone") ? document : root;
    target.addEventListener("keydown", keys);

    // On paper: the final state, every value and gradient.
    window.addEventListener("beforeprint", function () {
      printing = at;
      stop();
      go(count);
    });
    window.addEventListener("afterprint", function () {
      if (printing !== null) go(printing);
      printing = null;
    });
    go(data.start_at === "end" ? count : 0);
  }

  all(document, "[data-bp-root]:not([data-bp-ready])").forEach(setup);
})();
