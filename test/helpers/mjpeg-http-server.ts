import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** A live MJPEG-over-HTTP camera for tests, as IP cameras and ESP32-CAMs serve it. */
export interface MjpegHttpServer {
  /** `http://127.0.0.1:PORT/stream` */
  readonly url: string;
  /** JPEG parts written so far, over all clients. */
  readonly partsSent: () => number;
  /** Clients connected so far. */
  readonly connections: () => number;
  /** Stops sending parts while keeping connections open (a wedged camera); `resume()` goes on. */
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

export interface MjpegHttpServerOptions {
  /** JPEG images sent in turn, one per part. */
  readonly frames: readonly Buffer[];
  /** Parts per second per client (the camera's real rate). */
  readonly fps: number;
  /** Multipart boundary (default `frame`). */
  readonly boundary?: string;
}

/**
 * Serves a live `multipart/x-mixed-replace` stream at `/stream`: every 1/fps
 * seconds one part `--boundary`, `Content-Type: image/jpeg`,
 * `Content-Length`, blank line, the JPEG bytes — for as long as the client
 * stays, never ending by itself (unlike a finite .mjpeg file, whose frames
 * ffmpeg reads as fast as it likes).
 */
export async function startMjpegHttpServer(options: MjpegHttpServerOptions): Promise<MjpegHttpServer> {
  const boundary = options.boundary ?? 'frame';
  let sent = 0;
  let connections = 0;
  let paused = false;
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer((req, res) => {
    if (req.url !== '/stream') {
      res.writeHead(404).end();
      return;
    }
    connections += 1;
    res.writeHead(200, {
      'Content-Type': `multipart/x-mixed-replace; boundary=${boundary}`,
      'Cache-Control': 'no-cache',
      Connection: 'close',
    });
    let i = 0;
    const period = 1000 / options.fps;
    let next = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const tick = (): void => {
      if (timer) timers.delete(timer);
      if (res.destroyed) return;
      if (!paused) {
        const jpeg = options.frames[i++ % options.frames.length]!;
        res.write(`--${boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: ${jpeg.length}\r\n\r\n`);
        res.write(jpeg);
        res.write('\r\n');
        sent += 1;
      }
      next += period;
      timer = setTimeout(tick, Math.max(0, next - performance.now()));
      timers.add(timer);
    };
    tick();
    req.on('close', () => {
      if (timer) {
        clearTimeout(timer);
        timers.delete(timer);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/stream`,
    partsSent: () => sent,
    connections: () => connections,
    pause: () => {
      paused = true;
    },
    resume: () => {
      paused = false;
    },
    close: async () => {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
