// kubo-rpc-client, unchanged, against `ipfrs-store daemon`: block put/get/stat/rm, dag
// import/export, pin add/ls, refs local, repo stat.
// Usage: node kubo_client.mjs API_URL CAR_FILE ROOT_CID LEAF_CID (a block below ROOT)
// Prints one JSON object with what it saw; exits 1 with the reason on any mismatch.
import { readFile } from 'node:fs/promises'
import { create } from 'kubo-rpc-client'
import { CID } from 'multiformats/cid'

const [api, carFile, rootText, leafText] = process.argv.slice(2)
const client = create({ url: api })
const fail = (why) => { console.error(`kubo_client: ${why}`); process.exit(1) }
const concat = async (chunks) => {
  const parts = []
  for await (const c of chunks) parts.push(c)
  return Buffer.concat(parts)
}

const data = new TextEncoder().encode('hello from kubo-rpc-client')
const cid = await client.block.put(data, { format: 'raw', mhtype: 'sha2-256', version: 1 })
const got = await client.block.get(cid)
if (Buffer.compare(Buffer.from(got), Buffer.from(data)) !== 0) fail('block.get returned other bytes')
const stat = await client.block.stat(cid)
if (stat.size !== data.length) fail(`block.stat size ${stat.size}`)
if (!stat.cid.equals(cid)) fail('block.stat cid differs')

const car = await readFile(carFile)
const imported = []
for await (const r of client.dag.import([car], { pinRoots: true })) imported.push(r.root.cid.toString())
const root = CID.parse(rootText)
if (imported.length !== 1 || imported[0] !== root.toString()) fail(`dag.import roots ${imported}`)
const exported = await concat(client.dag.export(root))

await client.pin.add(cid, { recursive: false })
const pins = {}
for await (const p of client.pin.ls()) pins[p.cid.toString()] = p.type
if (pins[root.toString()] !== 'recursive') fail(`pin.ls: ${JSON.stringify(pins)}`)
if (pins[cid.toString()] !== 'direct') fail(`pin.ls: ${JSON.stringify(pins)}`)

// block.rm: a block inside the pinned DAG stays (Kubo's "pinned via <root>"); a loose one
// goes, with no error.
const leaf = CID.parse(leafText)
const refused = []
for await (const r of client.block.rm(leaf)) refused.push(r.error?.message ?? '')
const loose = await client.block.put(new TextEncoder().encode('loose'), { format: 'raw', version: 1 })
const removed = []
for await (const r of client.block.rm(loose)) removed.push(r.error?.message ?? null)
if (removed.length !== 1 || removed[0] !== null) fail(`block.rm of a loose block: ${removed}`)
const local = []
for await (const r of client.refs.local()) local.push(r.ref)

const repo = await client.repo.stat()
const version = await client.version()
const id = await client.id()

console.log(JSON.stringify({
  block: cid.toString(),
  blockSize: stat.size,
  imported,
  exportedBytes: exported.length,
  exportedBase64: exported.toString('base64'),
  pins,
  leaf: leaf.toString(),
  refused,
  localRefs: local.length,
  numObjects: Number(repo.numObjects),
  repoSize: Number(repo.repoSize),
  version: version.version,
  id: id.id.toString()
}))
