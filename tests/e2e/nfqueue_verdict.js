// An nfnetlink_queue listener written in Node.js from protos/ alone: it binds a queue of
// an emulated host's netfilter (NetfilterService.Queue on the host's IP service), drops
// every UDP datagram whose payload starts with "drop" and accepts every other packet.
//
//   NODE_PATH=.venv/node_modules node tests/e2e/nfqueue_verdict.js HOST:PORT [QUEUE] [COUNT]
//
// It prints one JSON line per event: {"bound": QUEUE} once the queue is bound, then
// {"id", "hook", "indev", "verdict", "payload"} for each packet. After COUNT packets
// (default: never) it ends its stream, which unbinds the queue, and exits 0.
"use strict";

const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [addr, queueArg = "0", countArg = "0"] = process.argv.slice(2);
if (!addr) {
  console.error("usage: node nfqueue_verdict.js HOST:PORT [QUEUE] [COUNT]");
  process.exit(2);
}
const queue = Number(queueArg);
const count = Number(countArg);

const definition = protoLoader.loadSync("stackemu/ip/v1/netfilter.proto", {
  includeDirs: [path.resolve(__dirname, "..", "..", "protos")],
  keepCase: true,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { NetfilterService } = grpc.loadPackageDefinition(definition).stackemu.ip.v1;
const client = new NetfilterService(addr, grpc.credentials.createInsecure());
const call = client.Queue();
let seen = 0;

// The UDP payload of an IPv4 packet, or null for anything else.
function udpPayload(ip) {
  if (ip.length < 20 || ip[0] >> 4 !== 4 || ip[9] !== 17) return null;
  const ihl = (ip[0] & 0x0f) * 4;
  return ip.subarray(ihl + 8);
}

call.on("data", (msg) => {
  if (msg.response === "bound") {
    console.log(JSON.stringify({ bound: msg.bound.queue_num }));
    return;
  }
  if (msg.response === "error") {
    console.log(JSON.stringify({ error: msg.error }));
    return;
  }
  const pkt = msg.packet;
  const data = udpPayload(pkt.payload);
  const verdict =
    data !== null && data.subarray(0, 4).toString() === "drop" ? "NF_VERDICT_DROP" : "NF_VERDICT_ACCEPT";
  call.write({ verdict: { id: pkt.id, verdict } });
  console.log(
    JSON.stringify({
      id: pkt.id,
      hook: pkt.hook,
      indev: pkt.indev_name,
      verdict,
      payload: data === null ? null : data.toString(),
    }),
  );
  seen += 1;
  if (count && seen === count) call.end();
});
call.on("error", (err) => {
  console.error(`Queue: ${err.message}`);
  process.exit(1);
});
call.on("end", () => process.exit(0));
process.on("SIGTERM", () => {
  call.cancel();
  process.exit(0);
});

call.write({ bind: { queue_num: queue } });
