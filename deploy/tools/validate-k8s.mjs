// Validates Kubernetes objects in YAML files (one or more documents each, as `helm template`
// prints them) against the Kubernetes API's OpenAPI schema, offline. Two checks per object:
//  1. kubernetes-models' validate(): validators generated from the Kubernetes OpenAPI (types,
//     required fields, enums, formats such as int32 and int-or-string).
//  2. Unknown fields, as `kubectl --validate=strict` and the API server's strict field validation
//     reject them: every field of every nested object must be a field of its OpenAPI type. The
//     OpenAPI types have no `additionalProperties: false`, so check 1 alone accepts a misspelled
//     field; the field lists come from @kubernetes/client-node's generated models (their
//     attributeTypeMap, generated from the same OpenAPI).
// Usage: node validate-k8s.mjs [--expect-invalid] FILE...
// Exit: 0 all valid (or, with --expect-invalid, every object invalid), 1 a validation result
// other than the expected one, 2 a usage or input error (unreadable file, bad YAML, a kind
// neither package knows). Modules are found in $NODEMESH_TOOLS_DIR/node_modules (default
// /opt/nodemesh-tools, deploy/tools/install-tools.sh).
import { readFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const toolsDir = process.env.NODEMESH_TOOLS_DIR || "/opt/nodemesh-tools";
const modulesDir = path.join(toolsDir, "node_modules");

function fail(message) {
  console.error(`validate-k8s: ${message}`);
  process.exit(2);
}

async function importFrom(file) {
  if (!existsSync(file)) fail(`${file} is missing (run deploy/tools/install-tools.sh)`);
  return import(pathToFileURL(file).href);
}

const require = createRequire(path.join(modulesDir, "noop.js"));
let YAML;
try {
  YAML = require("yaml");
} catch (e) {
  fail(`the yaml package is missing in ${modulesDir} (run deploy/tools/install-tools.sh)`);
}
const clientModelsDir = path.join(modulesDir, "@kubernetes/client-node/dist/gen/models");
const modelsDir = path.join(modulesDir, "kubernetes-models");

// apiVersion "apps/v1" -> kubernetes-models folder "apps/v1"; core "v1" -> "v1".
async function modelsClass(apiVersion, kind) {
  const file = path.join(modelsDir, apiVersion, `${kind}.js`);
  if (!/^[A-Za-z0-9.\-/]+$/.test(apiVersion) || !/^[A-Za-z0-9]+$/.test(kind) || !existsSync(file)) {
    return null;
  }
  const module = await importFrom(file);
  return module[kind] ?? null;
}

// @kubernetes/client-node names top-level models by version and kind: V1DaemonSet,
// V1beta1Foo. Kinds whose name is ambiguous across groups (Event, Subject, ...) carry the group:
// CoreV1Event, EventsV1Event; try that spelling first.
function clientModelName(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["core", apiVersion];
  const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);
  const groupWord = cap(group.split(".")[0]);
  return [`${groupWord}${cap(version)}${kind}`, `${cap(version)}${kind}`];
}

const fieldCache = new Map();
async function fieldsOf(modelName) {
  if (fieldCache.has(modelName)) return fieldCache.get(modelName);
  const file = path.join(clientModelsDir, `${modelName}.js`);
  let fields = null;
  if (/^[A-Za-z0-9]+$/.test(modelName) && existsSync(file)) {
    const module = await importFrom(file);
    const map = module[modelName]?.attributeTypeMap;
    if (Array.isArray(map)) fields = new Map(map.map((a) => [a.baseName, a.type]));
  }
  fieldCache.set(modelName, fields);
  return fields;
}

// Reports every field of `value` (of OpenAPI type `type`) that its type does not have.
async function unknownFields(value, type, where, problems) {
  if (value === null || value === undefined) return;
  let m = /^Array<(.+)>$/.exec(type);
  if (m) {
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        await unknownFields(value[i], m[1], `${where}/${i}`, problems);
      }
    }
    return;
  }
  m = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (m) {
    if (typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) {
        await unknownFields(v, m[1], `${where}/${k}`, problems);
      }
    }
    return;
  }
  const fields = await fieldsOf(type);
  if (!fields || typeof value !== "object" || Array.isArray(value)) return;  // a scalar type
  for (const [k, v] of Object.entries(value)) {
    if (!fields.has(k)) {
      problems.push(`${where || "/"}: unknown field "${k}" (not in ${type})`);
    } else {
      await unknownFields(v, fields.get(k), `${where}/${k}`, problems);
    }
  }
}

async function validateObject(object) {
  const problems = [];
  if (!object || typeof object !== "object" || Array.isArray(object)) {
    return ["not a Kubernetes object (a YAML mapping)"];
  }
  const { apiVersion, kind } = object;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    return ["apiVersion and kind must be strings"];
  }
  const Model = await modelsClass(apiVersion, kind);
  if (!Model) fail(`${apiVersion} ${kind}: no schema for this kind`);
  try {
    new Model(object).validate();
  } catch (e) {
    const details = Array.isArray(e.errors)
      ? e.errors.map((x) => `${x.instancePath || "/"}: ${x.message ?? x.keyword}`)
      : [String(e.message ?? e)];
    problems.push(...details);
  }
  let top = null;
  for (const name of clientModelName(apiVersion, kind)) {
    if (await fieldsOf(name)) {
      top = name;
      break;
    }
  }
  if (!top) fail(`${apiVersion} ${kind}: no field list for this kind`);
  await unknownFields(object, top, "", problems);
  return problems;
}

const args = process.argv.slice(2);
const expectInvalid = args[0] === "--expect-invalid";
const files = expectInvalid ? args.slice(1) : args;
if (files.length === 0) fail("usage: validate-k8s.mjs [--expect-invalid] FILE...");

let objects = 0;
let invalid = 0;
let unexpected = 0;
for (const file of files) {
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    fail(`${file}: ${e.message}`);
  }
  const docs = YAML.parseAllDocuments(text);
  for (const doc of docs) {
    if (doc.errors.length > 0) fail(`${file}: ${doc.errors[0].message}`);
    const object = doc.toJS();
    if (object === null || object === undefined) continue;  // an empty document
    objects++;
    const name = `${file}: ${object.kind ?? "?"} ${object.metadata?.name ?? "?"}`;
    const problems = await validateObject(object);
    if (problems.length > 0) {
      invalid++;
      if (!expectInvalid) unexpected++;
      for (const p of problems) console.log(`${name}: ${p}`);
    } else {
      if (expectInvalid) {
        unexpected++;
        console.log(`${name}: valid, but this file's objects are meant to be invalid`);
      } else {
        console.log(`${name}: valid`);
      }
    }
  }
}
if (objects === 0) fail("no Kubernetes objects in the input");
console.log(`${objects} object(s), ${invalid} invalid`);
process.exit(unexpected === 0 ? 0 : 1);
