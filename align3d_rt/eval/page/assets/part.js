// align3d_rt result page: draws the scored cloud with three.js (global THREE, inlined before this
// script). Data: the JSON in the part-data script element. Mouse: drag = rotate, wheel = zoom,
// right-drag or shift-drag = pan, double-click = reset.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("part-data").textContent);
  const cloud = data.cloud;

  function decode(b64, Type) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }

  const points = decode(cloud.points, Float32Array);
  const scores = decode(cloud.scores, Float32Array);
  const labels = cloud.labels ? decode(cloud.labels, Int32Array) : null;
  const n = scores.length;
  const lut = cloud.colormap; // 256 x [r, g, b] in 0..255
  const lo = cloud.score_range[0], hi = cloud.score_range[1];

  function colourIndex(s) {
    const t = hi > lo ? (s - lo) / (hi - lo) : 0;
    return Math.max(0, Math.min(255, Math.round(t * 255)));
  }

  // Centre the cloud at the origin; the group's rotation is what the mouse turns.
  const c = cloud.center;
  const centred = new Float32Array(points.length);
  for (let i = 0; i < n; i++) {
    centred[3 * i] = points[3 * i] - c[0];
    centred[3 * i + 1] = points[3 * i + 1] - c[1];
    centred[3 * i + 2] = points[3 * i + 2] - c[2];
  }
  const colours = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    const rgb = lut[colourIndex(scores[i])];
    colours[3 * i] = rgb[0] / 255;
    colours[3 * i + 1] = rgb[1] / 255;
    colours[3 * i + 2] = rgb[2] / 255;
  }

  const canvas = document.getElementById("cloud-canvas");
  const renderer = new THREE.WebGLRenderer({ canvas: canvas, antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(window.devicePixelRatio || 1);
  renderer.setClearColor(new THREE.Color(0x1b1e24), 1);
  const scene = new THREE.Scene();
  const camera = new THREE.PerspectiveCamera(35, 1, cloud.radius * 0.01, cloud.radius * 100);

  const geometry = new THREE.BufferGeometry();
  geometry.setAttribute("position", new THREE.BufferAttribute(centred, 3));
  geometry.setAttribute("color", new THREE.BufferAttribute(colours, 3));
  const baseSize = cloud.point_size;
  const material = new THREE.PointsMaterial({ size: baseSize, vertexColors: true, sizeAttenuation: true });
  const cloudPoints = new THREE.Points(geometry, material);
  scene.add(cloudPoints);

  // Region marking: the region points drawn again, larger, in one marker colour, and a box per region.
  const regions = data.part.regions || [];
  const regionObjects = [];
  if (labels && regions.length) {
    const idx = [];
    for (let i = 0; i < n; i++) if (labels[i] > 0) idx.push(i);
    const rpos = new Float32Array(3 * idx.length);
    idx.forEach(function (p, k) { rpos.set(centred.subarray(3 * p, 3 * p + 3), 3 * k); });
    const rgeo = new THREE.BufferGeometry();
    rgeo.setAttribute("position", new THREE.BufferAttribute(rpos, 3));
    const rmat = new THREE.PointsMaterial({ size: baseSize * 1.6, color: 0xff33ff, sizeAttenuation: true });
    regionObjects.push(new THREE.Points(rgeo, rmat));
  }
  regions.forEach(function (r) {
    const a = [r.bbox_min[0] - c[0], r.bbox_min[1] - c[1], r.bbox_min[2] - c[2]];
    const b = [r.bbox_max[0] - c[0], r.bbox_max[1] - c[1], r.bbox_max[2] - c[2]];
    const corner = function (i) { return [(i & 1) ? b[0] : a[0], (i & 2) ? b[1] : a[1], (i & 4) ? b[2] : a[2]]; };
    const edges = [0, 1, 1, 3, 3, 2, 2, 0, 4, 5, 5, 7, 7, 6, 6, 4, 0, 4, 1, 5, 2, 6, 3, 7];
    const pos = new Float32Array(edges.length * 3);
    edges.forEach(function (e, k) { pos.set(corner(e), 3 * k); });
    const g = new THREE.BufferGeometry();
    g.setAttribute("position", new THREE.BufferAttribute(pos, 3));
    regionObjects.push(new THREE.LineSegments(g, new THREE.LineBasicMaterial({ color: 0xffffff })));
  });
  regionObjects.forEach(function (o) { scene.add(o); });

  // Region numbers: HTML labels placed at the projected centroids.
  const overlay = document.getElementById("cloud-labels");
  const labelEls = regions.map(function (r) {
    const el = document.createElement("div");
    el.className = "region-label";
    el.textContent = String(r.id);
    overlay.appendChild(el);
    return el;
  });

  // View state: the objects turn about the cloud centre; the camera stays on +z looking at it.
  const start = new THREE.Quaternion(1, 0, 0, 0); // 180 deg about x: sensor view (y down, z away)
  const home = cloud.radius * 2.7;
  const state = { rot: start.clone(), dist: home, panX: 0, panY: 0 };
  const all = [cloudPoints].concat(regionObjects);

  function resize() {
    const w = canvas.clientWidth, h = canvas.clientHeight;
    renderer.setSize(w, h, false);
    camera.aspect = w / Math.max(1, h);
    camera.updateProjectionMatrix();
  }

  const tmp = new THREE.Vector3();
  function draw() {
    all.forEach(function (o) { o.quaternion.copy(state.rot); });
    camera.position.set(state.panX, state.panY, state.dist);
    camera.lookAt(state.panX, state.panY, 0);
    camera.updateMatrixWorld();
    renderer.render(scene, camera);
    const w = canvas.clientWidth, h = canvas.clientHeight;
    regions.forEach(function (r, k) {
      tmp.set(r.centroid[0] - c[0], r.centroid[1] - c[1], r.centroid[2] - c[2]).applyQuaternion(state.rot).project(camera);
      const el = labelEls[k];
      el.style.display = tmp.z < 1 ? "block" : "none";
      el.style.left = ((tmp.x + 1) / 2 * w) + "px";
      el.style.top = ((1 - tmp.y) / 2 * h) + "px";
    });
  }

  let pending = false;
  function redraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; draw(); });
  }

  const xAxis = new THREE.Vector3(1, 0, 0), yAxis = new THREE.Vector3(0, 1, 0);
  let drag = null;
  canvas.addEventListener("contextmenu", function (e) { e.preventDefault(); });
  canvas.addEventListener("pointerdown", function (e) {
    drag = { x: e.clientX, y: e.clientY, pan: e.button === 2 || e.shiftKey };
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointerup", function (e) { drag = null; canvas.releasePointerCapture(e.pointerId); });
  canvas.addEventListener("pointermove", function (e) {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    drag.x = e.clientX; drag.y = e.clientY;
    if (drag.pan) {
      const perPixel = 2 * state.dist * Math.tan(camera.fov * Math.PI / 360) / Math.max(1, canvas.clientHeight);
      state.panX -= dx * perPixel;
      state.panY += dy * perPixel;
    } else {
      const turn = new THREE.Quaternion().setFromAxisAngle(yAxis, dx * 0.01);
      turn.multiply(new THREE.Quaternion().setFromAxisAngle(xAxis, dy * 0.01));
      state.rot.premultiply(turn);
    }
    redraw();
  });
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    state.dist = Math.min(cloud.radius * 50, Math.max(cloud.radius * 0.05, state.dist * Math.exp(e.deltaY * 0.001)));
    redraw();
  }, { passive: false });
  canvas.addEventListener("dblclick", function () {
    state.rot.copy(start); state.dist = home; state.panX = 0; state.panY = 0;
    redraw();
  });

  const sizeInput = document.getElementById("point-size");
  sizeInput.addEventListener("input", function () {
    const f = parseFloat(sizeInput.value);
    material.size = baseSize * f;
    if (regionObjects.length && labels) regionObjects[0].material.size = baseSize * f * 1.6;
    redraw();
  });
  const markInput = document.getElementById("mark-regions");
  markInput.addEventListener("change", function () {
    regionObjects.forEach(function (o) { o.visible = markInput.checked; });
    labelEls.forEach(function (el) { el.style.visibility = markInput.checked ? "visible" : "hidden"; });
    redraw();
  });

  // Colour bar: the same 256-entry table, low at the bottom.
  const bar = document.getElementById("colour-bar");
  const ctx = bar.getContext("2d");
  for (let y = 0; y < bar.height; y++) {
    const rgb = lut[Math.round((1 - y / (bar.height - 1)) * 255)];
    ctx.fillStyle = "rgb(" + rgb[0] + "," + rgb[1] + "," + rgb[2] + ")";
    ctx.fillRect(0, y, bar.width, 1);
  }

  window.addEventListener("resize", function () { resize(); redraw(); });
  resize();
  draw();
  document.body.setAttribute("data-cloud-drawn", String(n));
})();
