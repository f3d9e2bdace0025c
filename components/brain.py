"""A brain-map widget: the inflated fsaverage5 surface in 3-D and flat maps of the same voxels side by side,
drawn by plotly.js in the browser.

Its value is one update from ``Engine.brain_view`` (``mindeye.surface.map_panels``) as JSON: values per voxel,
never the mesh. The mesh (``Engine.surface_geometry_file``) is fetched once per page and cached, and
``Plotly.react`` redraws in place, so a trial change sends tens of kilobytes, the camera stays where the user
turned it (until they pick another view) and the page keeps one WebGL context.
"""
from __future__ import annotations

import json

import gradio as gr

from . import PLOTLY_HEAD, serve_file

BRAIN_JS = r"""
const box3d = element.querySelector('.brain-3d'), boxFlat = element.querySelector('.brain-flat');
const noteEl = element.querySelector('.brain-note');
const cache = window.__brainGeometry || (window.__brainGeometry = {});
const geometry = (url) => cache[url] || (cache[url] = fetch(url).then((r) => {
  if (!r.ok) throw new Error('surface geometry: HTTP ' + r.status); return r.json(); }));
const fmt = (p) => p.ticktext ? '%{text}' : '%{intensity:.2f} ' + (p.unit || '');
const hoverText = (p, vals) => p.ticktext ? vals.map((v) => v === null ? '' : p.ticktext[v]) : undefined;
const colorbar = (p) => {
  const cb = {title: {text: p.unit ? p.title + ' (' + p.unit + ')' : p.title, side: 'right'}, len: 0.7, thickness: 14};
  if (p.ticktext) { cb.tickvals = p.ticks; cb.ticktext = p.ticktext; }
  return cb;
};
let seq = 0;
async function draw() {
  const P = window.__livePlotly || (window.__livePlotly = window.Plotly);
  if (!P) { setTimeout(draw, 200); return; }
  if (!props.value) { P.purge(box3d); P.purge(boxFlat); noteEl.textContent = 'The brain\'s response will appear here.'; return; }
  const mine = ++seq;
  const msg = JSON.parse(props.value);
  let geo;
  try { geo = await geometry(msg.geometry); } catch (e) { noteEl.textContent = String(e); return; }
  if (mine !== seq) return;  // a newer update arrived while the mesh was loading
  const view = msg.camera, main = msg.panels[msg.surface];
  const traces = [], labels = [];
  let barShown = false;
  for (const h of ['left', 'right']) {
    const g = geo.hemis[h], show = view.hemis.includes(h), r = g.roi;
    traces.push({type: 'mesh3d', x: g.x, y: g.y, z: g.z, i: g.i, j: g.j, k: g.k, intensity: g.sulc,
      colorscale: [[0, '#ececec'], [1, '#9a9a9a']], showscale: false, hoverinfo: 'skip', visible: show,
      lighting: {ambient: 0.75, diffuse: 0.45, specular: 0.05}, name: h + ' hemisphere'});
    const vals = r.voxels.map((v) => main.values[v]);
    traces.push({type: 'mesh3d', x: r.x, y: r.y, z: r.z, i: r.i, j: r.j, k: r.k, intensity: vals,
      text: hoverText(main, vals), cmin: main.cmin, cmax: main.cmax, colorscale: main.colorscale,
      showscale: show && !barShown, colorbar: colorbar(main), visible: show, name: h,
      lighting: {ambient: 0.8, diffuse: 0.35, specular: 0.05},
      hovertemplate: main.title + ': ' + fmt(main) + '<extra>' + h + '</extra>'});
    if (show) { barShown = true;
      labels.push({x: g.label.x, y: g.label.y, z: g.label.z, text: h === 'left' ? 'L' : 'R', showarrow: false,
                   font: {size: 20, color: '#333'}}); }
  }
  const axis = {visible: false, showspikes: false};
  P.react(box3d, traces, {
    margin: {l: 0, r: 0, t: 0, b: 0}, height: box3d.clientHeight || 430, paper_bgcolor: 'white',
    uirevision: msg.view,  // the camera stays where the user turned it until another view is picked
    scene: {xaxis: axis, yaxis: axis, zaxis: axis, aspectmode: 'data', annotations: labels,
            camera: {eye: {x: view.eye[0], y: view.eye[1], z: view.eye[2]}, up: {x: view.up[0], y: view.up[1], z: view.up[2]}}},
  }, {responsive: true, displaylogo: false, modeBarButtonsToRemove: ['resetCameraLastSave3d']});
  // flat maps: every panel side by side (for a response: the average and each repetition)
  const n = msg.panels.length, flat = [], ann = [];
  const layout = {margin: {l: 4, r: 4, t: 34, b: 4}, height: boxFlat.clientHeight || 200, showlegend: false,
                  paper_bgcolor: 'white', plot_bgcolor: 'white', uirevision: 'flat'};
  msg.panels.forEach((p, k) => {
    const xa = 'x' + (k ? k + 1 : ''), ya = 'y' + (k ? k + 1 : '');
    flat.push({type: 'scatter', mode: 'markers', x: geo.flat.x, y: geo.flat.y, xaxis: xa, yaxis: ya,
      text: p.ticktext ? p.values.map((v) => v === null ? '' : p.ticktext[v]) : undefined,
      marker: {color: p.values, cmin: p.cmin, cmax: p.cmax, colorscale: p.colorscale, size: 3.2,
               line: {width: 0}, showscale: false},
      hovertemplate: p.title + ': ' + (p.ticktext ? '%{text}' : '%{marker.color:.2f} ' + (p.unit || '')) + '<extra></extra>'});
    const d0 = k / n + 0.005, d1 = (k + 1) / n - 0.005;
    layout['xaxis' + (k ? k + 1 : '')] = {domain: [d0, d1], visible: false};
    layout['yaxis' + (k ? k + 1 : '')] = {visible: false, scaleanchor: xa};
    const bold = k === msg.surface && n > 1;
    ann.push({text: (bold ? '<b>' + p.title + '</b> ▲' : p.title), x: (d0 + d1) / 2, y: 1.13,
              xref: 'paper', yref: 'paper', showarrow: false, font: {size: 12}});
    ann.push({text: 'L', x: d0 + 0.01, y: 1.0, xref: 'paper', yref: 'paper', showarrow: false, font: {size: 11, color: '#666'}});
    ann.push({text: 'R', x: d1 - 0.01, y: 1.0, xref: 'paper', yref: 'paper', showarrow: false, font: {size: 11, color: '#666'}});
  });
  layout.annotations = ann;
  P.react(boxFlat, flat, layout, {responsive: true, displaylogo: false, displayModeBar: false});
  noteEl.textContent = msg.note || '';
}
draw();
watch('value', draw);
"""

TEMPLATE = ("<div class='brain-3d' style='height:430px'></div>"
            "<div class='brain-note' style='font-size:0.85em;color:#555;margin:2px 8px'></div>"
            "<div class='brain-flat' style='height:230px'></div>")


def brain_widget(engine) -> gr.HTML:
    """The widget, serving this dataset's surface geometry (and nothing else of the disk) to the browser."""
    serve_file(engine.surface_geometry_file())
    return gr.HTML(None, html_template=TEMPLATE, js_on_load=BRAIN_JS, head=PLOTLY_HEAD, padding=False,
                   container=True, min_height=680, elem_classes="brain-view")


def update(engine, payload: dict) -> str:
    """A ``brain_view`` payload as the widget's value (the geometry URL filled in)."""
    payload = dict(payload, geometry=f"gradio_api/file={engine.surface_geometry_file()}")
    return json.dumps(payload, separators=(",", ":"))
