// A UDP exchange on an emulated host, from Node.js and protos/ alone: open a process,
// make two sockets, bind both on 127.0.0.1, turn IP_PKTINFO on for the receiver, send a
// datagram from one to the other, receive it, and print one JSON object: the sender's
// sockaddr_in decoded, the IP_PKTINFO control message parsed, and the errno a third
// socket gets for binding the receiver's port again.
//
//   node examples/node/udp_pair.js [HOST:PORT] [RECV_PORT] [SEND_PORT]
//
// HOST:PORT is a socket service; without it (or empty), STACKEMU_SOCKET_ADDR, else the
// host STACKEMU_HOST (default alice) of the stack `stackemu up` wrote down in
// $STACKEMU_STATE_DIR/stack.json (default ~/.stackemu). The ports default to 9000 and
// 9001. Exit status 1, with the failing call and its errno on stderr, when a call fails.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

// include/linux/socket.h, include/uapi/linux/in.h (the numbers are x86_64's).
const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOL_IP = 0;
const IP_PKTINFO = 8;
const CMSG_HDR_LEN = 16; // struct cmsghdr: size_t cmsg_len; int cmsg_level; int cmsg_type
const CALL_TIMEOUT_MS = 10000;
const RECV_TIMEOUT_NS = 5000000000;

function serviceAddr(arg) {
  if (arg) return arg;
  if (process.env.STACKEMU_SOCKET_ADDR) return process.env.STACKEMU_SOCKET_ADDR;
  const dir = process.env.STACKEMU_STATE_DIR || path.join(os.homedir(), ".stackemu");
  const host = process.env.STACKEMU_HOST || "alice";
  const stack = JSON.parse(fs.readFileSync(path.join(dir, "stack.json"), "utf8"));
  return stack.hosts[host].socket.addr;
}

// struct sockaddr_in: sin_family in host order (little-endian), sin_port and sin_addr
// in network order, 8 bytes of sin_zero.
function sockaddrIn(addr, port) {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(AF_INET, 0);
  b.writeUInt16BE(port, 2);
  addr.split(".").forEach((octet, i) => b.writeUInt8(Number(octet), 4 + i));
  return b;
}

function parseSockaddrIn(b) {
  return { family: b.readUInt16LE(0), addr: [...b.subarray(4, 8)].join("."), port: b.readUInt16BE(2) };
}

// The control messages of msg_control as put_cmsg lays them out on x86_64: each a
// cmsghdr and its data, padded to 8 bytes (CMSG_ALIGN); IP_PKTINFO's data is struct
// in_pktinfo {int ipi_ifindex; struct in_addr ipi_spec_dst, ipi_addr}.
function parseCmsgs(control) {
  const out = [];
  let off = 0;
  while (off + CMSG_HDR_LEN <= control.length) {
    const len = Number(control.readBigUInt64LE(off));
    if (len < CMSG_HDR_LEN || off + len > control.length) break;
    const cmsg = {
      level: control.readInt32LE(off + 8),
      type: control.readInt32LE(off + 12),
      data: control.subarray(off + CMSG_HDR_LEN, off + len).toString("hex"),
    };
    if (cmsg.level === SOL_IP && cmsg.type === IP_PKTINFO) {
      const d = control.subarray(off + CMSG_HDR_LEN, off + len);
      cmsg.in_pktinfo = {
        ipi_ifindex: d.readInt32LE(0),
        ipi_spec_dst: [...d.subarray(4, 8)].join("."),
        ipi_addr: [...d.subarray(8, 12)].join("."),
      };
    }
    out.push(cmsg);
    off += (len + 7) & ~7;
  }
  return out;
}

const definition = protoLoader.loadSync("stackemu/socket/v1/socket.proto", {
  includeDirs: [path.resolve(__dirname, "..", "..", "protos")],
  keepCase: true,
  longs: Number,
  defaults: true,
});
const { SocketService } = grpc.loadPackageDefinition(definition).stackemu.socket.v1;
const client = new SocketService(serviceAddr(process.argv[2]), grpc.credentials.createInsecure());

// One RPC as a promise. A failed system call is not a gRPC error: the response's errno
// is set, as the syscall would return -errno.
function call(method, request) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + CALL_TIMEOUT_MS);
    client[method](request, { deadline }, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

async function check(method, request) {
  const response = await call(method, request);
  if (response.errno !== 0) {
    throw new Error(`${method}: errno ${response.errno}`);
  }
  return response;
}

async function main() {
  const recvPort = Number(process.argv[3] || 9000);
  const sendPort = Number(process.argv[4] || 9001);
  const { pid } = await call("OpenProcess", { comm: "node" });
  try {
    const rx = (await check("Socket", { pid, domain: AF_INET, type: SOCK_DGRAM, protocol: 0 })).fd;
    const tx = (await check("Socket", { pid, domain: AF_INET, type: SOCK_DGRAM, protocol: 0 })).fd;
    await check("Bind", { pid, fd: rx, addr: sockaddrIn("127.0.0.1", recvPort) });
    await check("Bind", { pid, fd: tx, addr: sockaddrIn("127.0.0.1", sendPort) });
    const one = Buffer.alloc(4);
    one.writeInt32LE(1);
    await check("SetSockOpt", { pid, fd: rx, level: SOL_IP, optname: IP_PKTINFO, optval: one });

    const payload = Buffer.from("hello from node");
    const { sent } = await check("SendMsg", { pid, fd: tx, data: payload, addr: sockaddrIn("127.0.0.1", recvPort) });
    const msg = await check("RecvMsg", { pid, fd: rx, bufsize: 2048, controllen: 64, timeout_ns: RECV_TIMEOUT_NS });

    // The errno convention: binding a third socket to the receiver's port fails as
    // inet_bind fails it, EADDRINUSE (98), in the response, not as a gRPC error.
    const third = (await check("Socket", { pid, domain: AF_INET, type: SOCK_DGRAM, protocol: 0 })).fd;
    const rebind = await call("Bind", { pid, fd: third, addr: sockaddrIn("127.0.0.1", recvPort) });

    console.log(
      JSON.stringify({
        fds: [rx, tx, third],
        sent,
        received: {
          data: msg.data.toString(),
          length: msg.length,
          from: parseSockaddrIn(msg.addr),
          msg_flags: msg.msg_flags,
          control: msg.control.toString("hex"),
          cmsgs: parseCmsgs(msg.control),
        },
        rebind_errno: rebind.errno,
      }),
    );
  } finally {
    await call("ExitProcess", { pid });
  }
}

// grpc-js gives every RPC a lower-case alias too, so on this service client.close (and
// grpc.closeClient, which calls it) is the Close RPC: close the channel by the method of
// grpc.Client itself.
const closeChannel = () => grpc.Client.prototype.close.call(client);
main().then(closeChannel, (err) => {
  console.error(err.message);
  closeChannel();
  process.exit(1);
});
