// Helia against the trustless gateway of `ipfrs-store daemon` (tools/tests/daemon_helia.rs):
// a light Helia node whose only block broker is the trustless gateway client and whose only
// router names the daemon's gateway (no libp2p, no delegated routing, no public gateway)
// reads one UnixFS file by its root CID, each block fetched as ?format=raw and checked
// against its CID by Helia, and writes the bytes to a file.
//
// usage: node helia_gateway.mjs <gateway URL> <root CID> <output file>
import { writeFile } from 'node:fs/promises'
import { fallbackRouter } from '@helia/fallback-router'
import { trustlessGatewayBlockBroker } from '@helia/trustless-gateway-client'
import { unixfs } from '@helia/unixfs'
import { createHeliaLight } from 'helia'
import { CID } from 'multiformats/cid'

const [gateway, root, out] = process.argv.slice(2)
if (out == null) {
  console.error('usage: node helia_gateway.mjs <gateway URL> <root CID> <output file>')
  process.exit(2)
}
// The test kills this process after its own bound; this one makes a hang a clear error.
const signal = AbortSignal.timeout(Number(process.env.HELIA_FETCH_TIMEOUT_MS ?? 40000))

// Helia 7.1 waits for its non-fallback routers to finish before it asks the fallback ones,
// and with none at all it waits forever: this one finds nothing, at once.
const nothing = { name: 'no-providers', async * findProviders () {} }
const helia = createHeliaLight({
  // The daemon listens on plain HTTP on loopback: both must be allowed explicitly.
  blockBrokers: [trustlessGatewayBlockBroker({ allowInsecure: true, allowLocal: true })],
  routers: [nothing, fallbackRouter({ gateways: [gateway], shuffle: false })]
})
await helia.start()
try {
  const chunks = []
  for await (const chunk of unixfs(helia).cat(CID.parse(root), { signal })) {
    chunks.push(chunk)
  }
  const bytes = Buffer.concat(chunks)
  await writeFile(out, bytes)
  console.log(`read ${bytes.length}`)
} finally {
  await helia.stop()
}
process.exit(0)
