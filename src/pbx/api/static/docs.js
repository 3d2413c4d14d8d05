// The API reference: renders /api/v1/openapi.json (OpenAPI 3.1) as HTML.
// Every text goes in through textContent, never innerHTML: feature plugins
// add paths to the document, and their words must stay words.
"use strict";

const METHODS = ["get", "put", "post", "patch", "delete"];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child);
    }
  }
  return node;
}

function refName(ref) {
  return ref.split("/").pop();
}

// One schema as a line of text, with its object properties as a nested list.
function schemaNode(schema) {
  if (!schema || typeof schema !== "object") {
    return el("span", { class: "type" }, "any");
  }
  if (schema.$ref) {
    const name = refName(schema.$ref);
    return el("a", { href: `#schema-${name}`, class: "type" }, name);
  }
  const line = el("span", { class: "schema" });
  const notes = [];
  if (schema.const !== undefined) {
    line.append(el("span", { class: "type" }, JSON.stringify(schema.const)));
  } else if (schema.enum) {
    line.append(el("span", { class: "type" }, schema.enum.map((v) => JSON.stringify(v)).join(" | ")));
  } else if (schema.type === "array") {
    line.append(el("span", { class: "type" }, "array of "), schemaNode(schema.items));
  } else {
    const type = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "any";
    line.append(el("span", { class: "type" }, type));
  }
  if (schema.pattern) notes.push(`pattern ${schema.pattern}`);
  if (schema.minLength !== undefined) notes.push(`at least ${schema.minLength} characters`);
  if (schema.maxLength !== undefined) notes.push(`at most ${schema.maxLength} characters`);
  if (schema.minimum !== undefined) notes.push(`from ${schema.minimum}`);
  if (schema.maximum !== undefined) notes.push(`up to ${schema.maximum}`);
  if (schema.writeOnly) notes.push("write only");
  if (schema.additionalProperties === false) notes.push("no other fields");
  if (schema.description) notes.push(schema.description);
  if (notes.length) line.append(` (${notes.join("; ")})`);
  if (schema.additionalProperties && typeof schema.additionalProperties === "object") {
    line.append(": name → ", schemaNode(schema.additionalProperties));
  }
  if (schema.properties) {
    const required = new Set(schema.required || []);
    const list = el("ul");
    for (const [name, property] of Object.entries(schema.properties)) {
      list.append(el("li", {}, el("code", {}, name), required.has(name) ? el("span", { class: "required" }, " required") : null,
                     ": ", schemaNode(property)));
    }
    line.append(list);
  }
  return line;
}

function contentList(content) {
  const list = el("ul");
  for (const [type, media] of Object.entries(content || {})) {
    list.append(el("li", {}, el("code", {}, type), " ", schemaNode(media.schema)));
  }
  return list;
}

function operation(doc, path, method, op, shared) {
  const id = `op-${method}-${path.replace(/[^A-Za-z0-9]+/g, "-")}`;
  const section = el("section", { class: "operation", id },
    el("h3", {}, el("span", { class: "method" }, method), el("span", { class: "path" }, path)),
    el("p", {}, op.summary || ""));
  // OpenAPI §4.8.10: an operation's security replaces the document's; [] means none.
  const security = op.security !== undefined ? op.security : doc.security || [];
  section.append(el("p", { class: "auth" }, security.length ? "Needs a bearer token." : "No login needed."));
  const parameters = [...shared, ...(op.parameters || [])];
  if (parameters.length) {
    const list = el("ul");
    for (const p of parameters) {
      list.append(el("li", {}, el("code", {}, p.name), ` in ${p.in}`,
                     p.required ? el("span", { class: "required" }, " required") : null, ": ", schemaNode(p.schema)));
    }
    section.append(el("h4", {}, "Parameters"), list);
  }
  if (op.requestBody) {
    section.append(el("h4", {}, op.requestBody.required ? "Request body (required)" : "Request body"),
                   contentList(op.requestBody.content));
  }
  const responses = el("ul");
  for (const [code, response] of Object.entries(op.responses || {})) {
    const item = el("li", {}, el("strong", {}, code), ` ${response.description || ""}`);
    if (response.content) item.append(contentList(response.content));
    responses.append(item);
  }
  section.append(el("h4", {}, "Responses"), responses);
  return section;
}

function render(doc) {
  const main = document.getElementById("docs");
  const contents = el("ul", { id: "contents" });
  const paths = el("section", { id: "paths" }, el("h2", {}, "Paths"), contents);
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      if (!item[method]) continue;
      const section = operation(doc, path, method, item[method], item.parameters || []);
      contents.append(el("li", {}, el("a", { href: `#${section.id}` }, el("span", { class: "method" }, method), path),
                         ` ${item[method].summary || ""}`));
      paths.append(section);
    }
  }
  const schemas = el("section", { id: "schemas" }, el("h2", {}, "Schemas"));
  for (const [name, schema] of Object.entries((doc.components || {}).schemas || {})) {
    schemas.append(el("section", { id: `schema-${name}` }, el("h3", {}, name), schemaNode(schema)));
  }
  main.append(paths, schemas);
}

document.addEventListener("DOMContentLoaded", async () => {
  const message = document.getElementById("message");
  try {
    const response = await fetch("/api/v1/openapi.json");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    message.textContent = "";
  } catch (error) {
    message.textContent = `Could not load the OpenAPI document: ${error.message}`;
  }
});
