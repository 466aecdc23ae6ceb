// A Helia client for node/tests/helia.rs: dials one peer over TCP (noise, yamux), reads one
// UnixFS file by its root CID over bitswap only (no HTTP gateways, no routers, no DHT), and
// writes the bytes to a file.
//
// usage: node helia_fetch.mjs <peer multiaddr with /p2p/> <root CID> <output file>
import { writeFile } from 'node:fs/promises'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { unixfs } from '@helia/unixfs'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createHeliaLight } from 'helia'
import { CID } from 'multiformats/cid'

const [addr, root, out] = process.argv.slice(2)
if (out == null) {
  console.error('usage: node helia_fetch.mjs <multiaddr> <root CID> <output file>')
  process.exit(2)
}
// The test kills this process after its own bound; this one makes a hang a clear error.
const signal = AbortSignal.timeout(Number(process.env.HELIA_FETCH_TIMEOUT_MS ?? 40000))

const helia = withBitswap(withLibp2pLight(createHeliaLight({ blockBrokers: [], routers: [] }), {
  addresses: { listen: [] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify() }
}))
await helia.start()
try {
  const connection = await helia.libp2p.dial(multiaddr(addr), { signal })
  console.log(`connected ${connection.remotePeer}`)
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
