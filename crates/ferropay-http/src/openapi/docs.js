// Renders /openapi.json as a reference: operations grouped by tag, with their parameters,
// bodies, answers and scopes, then every schema. Text goes in through textContent only.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function schemaName(schema) {
  if (!schema) return "";
  if (schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return el("a", { href: "#schema-" + name }, name);
  }
  if (schema.type === "array" || (Array.isArray(schema.type) && schema.items)) {
    const inner = schemaName(schema.items);
    return el("span", {}, "array of ", inner);
  }
  return Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "object";
}

function operation(path, method, op) {
  const box = el("div", { class: "op", id: op.operationId || method + path });
  box.append(el("div", {}, el("span", { class: "method " + method }, method), " ", el("code", {}, path)));
  if (op.description) box.append(el("p", {}, op.description));
  const params = op.parameters || [];
  if (params.length) {
    const table = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"),
      el("th", {}, "type"), el("th", {}, "description")));
    for (const p of params) {
      table.append(el("tr", {}, el("td", {}, el("code", {}, p.name), p.required ? " (required)" : ""),
        el("td", {}, p.in), el("td", {}, schemaName(p.schema)), el("td", {}, p.description || "")));
    }
    box.append(table);
  }
  const body = op.requestBody && op.requestBody.content;
  if (body) {
    for (const [type, content] of Object.entries(body)) {
      box.append(el("p", {}, "Body (", el("code", {}, type), "): ", schemaName(content.schema)));
    }
  }
  const answers = el("table", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "body"),
    el("th", {}, "description")));
  for (const [status, response] of Object.entries(op.responses || {})) {
    const content = response.content ? Object.values(response.content)[0] : null;
    const headers = Object.keys(response.headers || {});
    answers.append(el("tr", {}, el("td", {}, status), el("td", {}, content ? schemaName(content.schema) : ""),
      el("td", {}, response.description || "", headers.length ? " — headers: " + headers.join(", ") : "")));
  }
  box.append(answers);
  return box;
}

async function render() {
  const root = document.getElementById("reference");
  try {
    const spec = await (await fetch("/openapi.json")).json();
    root.textContent = "";
    root.append(el("p", {}, spec.info.description || "", " Version ", spec.info.version, "."));
    const byTag = new Map();
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const method of ["get", "post", "put", "patch", "delete"]) {
        if (!item[method]) continue;
        const tag = (item[method].tags || ["other"])[0];
        if (!byTag.has(tag)) byTag.set(tag, []);
        byTag.get(tag).push(operation(path, method, item[method]));
      }
    }
    for (const tag of spec.tags || []) {
      if (!byTag.has(tag.name)) continue;
      root.append(el("h2", {}, tag.name), el("p", { class: "hint" }, tag.description || ""));
      for (const box of byTag.get(tag.name)) root.append(box);
    }
    root.append(el("h2", {}, "Schemas"));
    for (const [name, schema] of Object.entries((spec.components || {}).schemas || {})) {
      root.append(el("h3", { id: "schema-" + name }, name), el("pre", {}, JSON.stringify(schema, null, 2)));
    }
  } catch (error) {
    root.textContent = "Could not load /openapi.json: " + error;
  }
}

render();
