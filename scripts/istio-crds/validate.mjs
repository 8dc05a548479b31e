// Validates Kubernetes objects against Istio's published CRD schemas.
//
// The schemas come from the pinned npm package @kubernetes-models/istio (see package.json): its
// `_schemas/*.js` are validators compiled (Ajv, standalone) from the openAPIV3Schema of Istio's
// crd-all.gen.yaml. Installed into .tools/istio-crds by scripts/fetch-istio-crds.sh.
//
// Usage: node validate.mjs ROOT DOCS.json
//   ROOT      the directory holding node_modules (.tools/istio-crds)
//   DOCS.json a JSON array of objects
// Prints one JSON line per object: {"index": N, "schema": "...", "errors": [...]} ("errors"
// empty when valid). Exits 0 when every object could be checked, 2 on a usage or set-up error.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const SCHEMAS = {
  "networking.istio.io/v1/Sidecar": "NetworkingIstioIoV1Sidecar",
  "networking.istio.io/v1beta1/Sidecar": "NetworkingIstioIoV1beta1Sidecar",
  "networking.istio.io/v1alpha3/Sidecar": "NetworkingIstioIoV1alpha3Sidecar",
  "extensions.istio.io/v1alpha1/WasmPlugin": "ExtensionsIstioIoV1alpha1WasmPlugin",
  "networking.istio.io/v1alpha3/EnvoyFilter": "NetworkingIstioIoV1alpha3EnvoyFilter",
  "security.istio.io/v1/PeerAuthentication": "SecurityIstioIoV1PeerAuthentication",
};

const [root, docsPath] = process.argv.slice(2);
if (!root || !docsPath) {
  console.error("usage: node validate.mjs ROOT DOCS.json");
  process.exit(2);
}
const docs = JSON.parse(readFileSync(docsPath, "utf8"));
const validators = {};
for (const [key, file] of Object.entries(SCHEMAS)) {
  const path = join(root, "node_modules", "@kubernetes-models", "istio", "_schemas", `${file}.js`);
  try {
    validators[key] = (await import(pathToFileURL(path).href)).validate;
  } catch (e) {
    console.error(`cannot load ${path}: ${e.message}\nrun scripts/setup.sh (or scripts/fetch-istio-crds.sh)`);
    process.exit(2);
  }
}
// TrafficExtension (Istio 1.30+) is not in @kubernetes-models/istio 3.0.1: its schema is written
// here from Istio's API (trafficextension.schema.json, which says from which revision) and
// compiled with the Ajv that package already depends on.
const OWN_SCHEMAS = {
  "extensions.istio.io/v1alpha1/TrafficExtension": "trafficextension.schema.json",
};
{
  const ajvPath = join(root, "node_modules", "ajv", "dist", "ajv.js");
  let Ajv;
  try {
    Ajv = (await import(pathToFileURL(ajvPath).href)).default;
  } catch (e) {
    console.error(`cannot load ${ajvPath}: ${e.message}\nrun scripts/setup.sh (or scripts/fetch-istio-crds.sh)`);
    process.exit(2);
  }
  const ajv = new (Ajv.default ?? Ajv)({ allErrors: true, strict: false });
  const here = dirname(fileURLToPath(import.meta.url));
  for (const [key, file] of Object.entries(OWN_SCHEMAS)) {
    validators[key] = ajv.compile(JSON.parse(readFileSync(join(here, file), "utf8")));
    SCHEMAS[key] = file;
  }
}
docs.forEach((doc, index) => {
  const key = `${doc?.apiVersion}/${doc?.kind}`;
  const validate = validators[key];
  if (!validate) {
    console.log(JSON.stringify({ index, schema: null, errors: [`no Istio schema for ${key}`] }));
    return;
  }
  const ok = validate(doc);
  const errors = ok
    ? []
    : (validate.errors ?? []).map(
        (e) => `${e.instancePath || "/"} ${e.keyword}: ${e.message ?? ""} ${JSON.stringify(e.params)}`.trim(),
      );
  console.log(JSON.stringify({ index, schema: SCHEMAS[key], errors }));
});
