// Checks the ECS field subset the crate keeps (tests/data/ecs-*-fields.txt) against Elastic's
// published field definitions: every name must exist in ECS with the same type.
// Usage: node .ci/ecs_check.js <path to an installed @elastic/ecs> <subset file>
'use strict';
const fs = require('fs');
const [ecsPath, subsetPath] = process.argv.slice(2);
const { EcsFlat, EcsVersion } = require(ecsPath);
let failures = 0;
let checked = 0;
for (const line of fs.readFileSync(subsetPath, 'utf8').split('\n')) {
  const text = line.trim();
  if (text === '' || text.startsWith('#')) continue;
  const [name, type] = text.split(/\s+/);
  const field = EcsFlat[name];
  checked += 1;
  if (!field) {
    console.error(`${name}: not an ECS ${EcsVersion} field`);
    failures += 1;
  } else if (field.type !== type) {
    console.error(`${name}: ECS ${EcsVersion} says ${field.type}, the subset says ${type}`);
    failures += 1;
  }
}
if (failures > 0) process.exit(1);
console.log(`${checked} fields match ECS ${EcsVersion}`);
