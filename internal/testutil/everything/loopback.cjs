'use strict';
// Preloaded (node -r) into @modelcontextprotocol/server-everything by
// everything.StartHTTP. The server only reads PORT and calls app.listen(PORT),
// which binds every interface; this forces a loopback bind and reports the port
// actually bound (PORT=0 picks a free one) on stderr for the Go side to read.
const net = require('node:net');

const origListen = net.Server.prototype.listen;
net.Server.prototype.listen = function listen(...args) {
  const port = args[0];
  const isPort = typeof port === 'number' || (typeof port === 'string' && /^\d+$/.test(port));
  // listen(port) or listen(port, callback): no host given, so insert one.
  if (isPort && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, '127.0.0.1');
  }
  this.once('listening', () => {
    const addr = this.address();
    if (addr && typeof addr === 'object') {
      process.stderr.write(`MCPGATE_EVERYTHING_LISTENING ${addr.address} ${addr.port}\n`);
    }
  });
  return origListen.apply(this, args);
};
