// The inspection page's box editor: plain JS on a canvas, no library, served from this site only.
// Boxes are image pixels [x1, y1, x2, y2]; the form's hidden 'boxes' field carries them on submit.
// Drag a box to move it, a corner to resize it, empty image to draw one; Delete removes the selected box.
(function () {
  "use strict";
  const canvas = document.getElementById("canvas");
  const form = document.getElementById("answer-form");
  if (!canvas || !form) { return; }
  const field = document.getElementById("boxes");
  const classPick = document.getElementById("class-name");
  const ctx = canvas.getContext("2d");
  const image = new Image();
  let boxes = JSON.parse(canvas.dataset.boxes || "[]").map(function (b) {
    return { class_name: b.class_name, box: b.box.slice(), score: b.score };
  });
  let scale = 1, selected = -1, drag = null;

  function save() {
    field.value = JSON.stringify(boxes.map(function (b) { return { class_name: b.class_name, box: b.box }; }));
  }
  function draw() {
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    boxes.forEach(function (b, i) {
      const [x1, y1, x2, y2] = b.box.map(function (v) { return v * scale; });
      ctx.lineWidth = i === selected ? 3 : 2;
      ctx.strokeStyle = i === selected ? "#ffd400" : "#ff3030";
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      ctx.fillStyle = ctx.strokeStyle;
      ctx.font = "12px sans-serif";
      ctx.fillText(b.class_name + (b.score !== undefined ? " " + b.score.toFixed(2) : ""), x1 + 2, Math.max(12, y1 - 3));
    });
  }
  function at(event) {
    const r = canvas.getBoundingClientRect();
    return [(event.clientX - r.left) / scale, (event.clientY - r.top) / scale];
  }
  function hit(p) {
    for (let i = boxes.length - 1; i >= 0; i--) {
      const [x1, y1, x2, y2] = boxes[i].box;
      if (p[0] >= x1 && p[0] <= x2 && p[1] >= y1 && p[1] <= y2) { return i; }
    }
    return -1;
  }
  function clamp(v, hi) { return Math.min(Math.max(v, 0), hi); }

  image.onload = function () {
    scale = Math.min(1, 640 / image.naturalWidth) || 1;
    scale = Math.max(scale, 320 / Math.max(image.naturalWidth, image.naturalHeight));
    canvas.width = Math.round(image.naturalWidth * scale);
    canvas.height = Math.round(image.naturalHeight * scale);
    canvas.dataset.scale = String(scale);
    draw();
    save();
    canvas.dataset.ready = "1";
  };
  image.src = canvas.dataset.image;

  function corner(p) {
    // A box corner within 8 screen pixels (topmost box first): dragging it resizes the box about the opposite one.
    const reach = 8 / scale;
    for (let i = boxes.length - 1; i >= 0; i--) {
      const [x1, y1, x2, y2] = boxes[i].box;
      for (const [cx, cy, ox, oy] of [[x1, y1, x2, y2], [x2, y1, x1, y2], [x1, y2, x2, y1], [x2, y2, x1, y1]]) {
        if (Math.abs(p[0] - cx) <= reach && Math.abs(p[1] - cy) <= reach) { return [i, [ox, oy]]; }
      }
    }
    return null;
  }
  function inside(i, p) {
    const [x1, y1, x2, y2] = boxes[i].box;
    return p[0] >= x1 && p[0] <= x2 && p[1] >= y1 && p[1] <= y2;
  }

  canvas.addEventListener("mousedown", function (e) {
    const p = at(e), grabbed = corner(p);
    if (grabbed) {
      selected = grabbed[0];
      drag = { mode: "draw", from: grabbed[1] };  // the opposite corner stays put
    } else {
      selected = selected >= 0 && inside(selected, p) ? selected : hit(p);  // the selected box keeps the grip
      if (selected >= 0) {
        drag = { mode: "move", from: p, start: boxes[selected].box.slice() };
      } else {
        boxes.push({ class_name: classPick ? classPick.value || "defect" : "defect", box: [p[0], p[1], p[0], p[1]] });
        selected = boxes.length - 1;
        drag = { mode: "draw", from: p };
      }
    }
    show(selected);
    draw();
  });
  canvas.addEventListener("mousemove", function (e) {
    if (!drag) { return; }
    const p = at(e), b = boxes[selected], w = image.naturalWidth, h = image.naturalHeight;
    if (drag.mode === "move") {
      const dx = p[0] - drag.from[0], dy = p[1] - drag.from[1];
      const bw = drag.start[2] - drag.start[0], bh = drag.start[3] - drag.start[1];
      const x1 = clamp(drag.start[0] + dx, w - bw), y1 = clamp(drag.start[1] + dy, h - bh);
      b.box = [x1, y1, x1 + bw, y1 + bh];
    } else {
      b.box = [Math.min(drag.from[0], clamp(p[0], w)), Math.min(drag.from[1], clamp(p[1], h)),
               Math.max(drag.from[0], clamp(p[0], w)), Math.max(drag.from[1], clamp(p[1], h))];
    }
    draw();
  });
  window.addEventListener("mouseup", function () {
    if (drag && drag.mode === "draw") {
      const b = boxes[selected].box;
      if (b[2] - b[0] < 2 || b[3] - b[1] < 2) { boxes.splice(selected, 1); selected = -1; }  // a click, not a box
    }
    drag = null;
    save();
    draw();
  });

  if (classPick) {
    // The class list names the selected box's class; choosing another relabels it (and any box drawn next).
    classPick.addEventListener("change", function () {
      if (selected >= 0) { boxes[selected].class_name = classPick.value; save(); draw(); }
      classPick.blur();  // back to the answer keys: a focused list would take 'd' as a class's first letter
    });
  }
  function show(i) {
    if (classPick && i >= 0 && Array.from(classPick.options).some(function (o) { return o.value === boxes[i].class_name; })) {
      classPick.value = boxes[i].class_name;
    }
  }

  function submit(verdict) {
    save();
    const button = document.getElementById(verdict);
    if (button) { form.requestSubmit(button); }
  }
  document.addEventListener("keydown", function (e) {
    if (e.target && (e.target.tagName === "SELECT" || e.target.tagName === "INPUT")) { return; }
    if ((e.key === "Delete" || e.key === "Backspace") && selected >= 0) {
      boxes.splice(selected, 1); selected = -1; save(); draw(); e.preventDefault();
    } else if (e.key === "g") { submit("good"); }
    else if (e.key === "d") { submit("defect"); }
    else if (e.key === "s") { submit("skip"); }
  });
  form.addEventListener("submit", save);
}());
