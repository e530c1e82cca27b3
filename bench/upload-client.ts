/**
 * Streams one message with a large generated attachment as multipart/form-data, never
 * holding more than one 64 KiB piece: node bench/upload-client.ts <url> <apiKey> <from> <MB>
 */
const [url, key, from, megabytes] = process.argv.slice(2)
const boundary = `----mailgate-bench-${Date.now()}`
const size = Number(megabytes) * 1024 * 1024
const message = JSON.stringify({ from, to: ['customer@example.com'], subject: 'large file', body: { contentType: 'text', content: 'attached' } })
const head = Buffer.from(
  `--${boundary}\r\nContent-Disposition: form-data; name="message"\r\nContent-Type: application/json\r\n\r\n${message}\r\n` +
    `--${boundary}\r\nContent-Disposition: form-data; name="attachment"; filename="large.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
)
const tail = Buffer.from(`\r\n--${boundary}--\r\n`)
const piece = Buffer.alloc(64 * 1024, 0x5a)

let sent = -1
const body = new ReadableStream<Uint8Array>({
  pull(controller) {
    if (sent === -1) {
      controller.enqueue(head)
      sent = 0
    } else if (sent < size) {
      const length = Math.min(piece.length, size - sent)
      controller.enqueue(piece.subarray(0, length))
      sent += length
    } else {
      controller.enqueue(tail)
      controller.close()
    }
  },
})

const response = await fetch(url!, {
  method: 'POST',
  headers: { authorization: `Bearer ${key}`, 'content-type': `multipart/form-data; boundary=${boundary}` },
  body,
  duplex: 'half',
} as RequestInit)
process.stdout.write(`${response.status} ${(await response.text()).slice(0, 200)}\n`)
if (response.status !== 202) process.exit(1)
