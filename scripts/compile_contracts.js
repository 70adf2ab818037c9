#!/usr/bin/env node
// Compile contracts/*.sol with the pinned solc (npm `solc`, see package.json) and write
// contracts/build/<Name>.json = {"abi": [...], "bytecode": "0x..."} for each deployable
// contract. The output depends only on the sources and the settings below, so the committed
// artifacts can be checked by recompiling (tests/l1/test_artifacts.py).
//
// Usage: node scripts/compile_contracts.js [--out DIR]   (default DIR: contracts/build)
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const ROOT = path.resolve(__dirname, "..");
const SOURCES = path.join(ROOT, "contracts");
const DEPLOYABLE = ["Bridge", "CollateralToken", "Commitments", "Inbox"];
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
};

function parseArgs(argv) {
  let out = path.join(SOURCES, "build");
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--out" && i + 1 < argv.length) {
      out = path.resolve(argv[++i]);
    } else {
      throw new Error(`unknown argument ${argv[i]}; usage: compile_contracts.js [--out DIR]`);
    }
  }
  return { out };
}

function main() {
  const { out } = parseArgs(process.argv.slice(2));
  const sources = {};
  for (const name of fs.readdirSync(SOURCES).filter((f) => f.endsWith(".sol")).sort()) {
    sources[name] = { content: fs.readFileSync(path.join(SOURCES, name), "utf8") };
  }
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  let failed = false;
  for (const diagnostic of output.errors || []) {
    process.stderr.write(diagnostic.formattedMessage || diagnostic.message);
    if (diagnostic.severity === "error") failed = true;
  }
  if (failed) process.exit(1);
  fs.mkdirSync(out, { recursive: true });
  for (const name of DEPLOYABLE) {
    const contract = output.contracts[`${name}.sol`] && output.contracts[`${name}.sol`][name];
    if (!contract) throw new Error(`${name}.sol did not produce contract ${name}`);
    const artifact = { abi: contract.abi, bytecode: "0x" + contract.evm.bytecode.object };
    fs.writeFileSync(path.join(out, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
  }
  process.stdout.write(`compiled ${DEPLOYABLE.join(", ")} with solc ${solc.version()} into ${out}\n`);
}

main();
