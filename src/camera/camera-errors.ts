import os from 'node:os';

/**
 * Camera failures a user can fix, recognised from what the camera program
 * (rpicam-vid, libcamera-vid or ffmpeg) printed on stderr and how it exited.
 *
 * - `camera_stack_broken`: the camera program cannot even start because its
 *   libraries do not match (`symbol lookup error`, `undefined symbol`,
 *   `error while loading shared libraries`; the dynamic loader exits 127) —
 *   typically a partial upgrade (raspberrypi/rpicam-apps #781).
 * - `permission_denied`: the service user may not open the camera's device
 *   nodes (`/dev/media*`, `/dev/video*`: group `video`) or the DMA heaps
 *   (`/dev/dma_heap/*`: libcamera's "Could not open any dmaHeap device",
 *   rpicam's "failed to import fd"/"failed to allocate capture buffers").
 * - `camera_busy`: another process holds the camera (libcamera's "Pipeline
 *   handler in use by another process", rpicam's "failed to acquire camera",
 *   V4L2 "Device or resource busy").
 * - `no_camera`: nothing to open (rpicam's "no cameras available" or
 *   "selected camera is not available"; ffmpeg's "No such file or directory"
 *   for a /dev/video device).
 *
 * Checked in that order: a permission problem also makes libcamera report
 * "no cameras available", so the more specific cause wins.
 */
type CameraErrorKind = 'camera_stack_broken' | 'permission_denied' | 'camera_busy' | 'no_camera';

/** A recognised camera failure: what is wrong (one sentence naming the program) and what to do. */
export interface CameraError {
  readonly kind: CameraErrorKind;
  readonly message: string;
  readonly hint: string;
  /** The stderr line that gave it away (absent when recognised from the exit status alone). */
  readonly line?: string;
}

/** How the camera program ended: an exit code, or the signal that killed it. */
export interface ProgramExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

const PATTERNS: readonly { kind: CameraErrorKind; re: RegExp }[] = [
  { kind: 'camera_stack_broken', re: /symbol lookup error|undefined symbol|error while loading shared libraries|cannot open shared object file/i },
  {
    kind: 'permission_denied',
    re: /permission denied|operation not permitted|could not open any dma ?heap device|failed to import fd|failed to allocate capture buffers|failed to open vchiq/i,
  },
  { kind: 'camera_busy', re: /pipeline handler in use by another process|failed to acquire camera|device or resource busy|\bEBUSY\b/i },
  {
    kind: 'no_camera',
    re: /no cameras available|selected camera is not available|\/dev\/video\S*: no such file or directory|cannot open video device|no such device/i,
  },
];

/**
 * The hint for each kind. `user` is the account the daemon runs as (named in
 * the permission hint), `device` the device or camera named by the source.
 */
function hintFor(kind: CameraErrorKind, user: string, device: string): string {
  switch (kind) {
    case 'camera_stack_broken':
      return "the camera libraries do not match the camera program (a partial upgrade): run 'sudo apt update && sudo apt full-upgrade' and reboot";
    case 'permission_denied':
      return `add the user '${user}' to the 'video' group ('sudo usermod -aG video ${user}', then restart the service), which grants /dev/video*, /dev/media* and /dev/dma_heap/*; a systemd unit with DevicePolicy= or PrivateDevices= must allow them too`;
    case 'camera_busy':
      return `another process holds ${device}: stop it (list them with 'sudo fuser -v /dev/media* /dev/video*'); a second edge-classifier or a camera app left running are the usual ones`;
    case 'no_camera':
      return device.startsWith('/dev/')
        ? `${device} does not exist: check the cable and 'v4l2-ctl --list-devices', or set source.spec to the device that does`
        : "no camera was detected: check the ribbon cable (contacts facing the right way, both ends seated) with the power off, and 'rpicam-hello --list-cameras'; on Raspberry Pi OS keep camera_auto_detect=1 in /boot/firmware/config.txt";
  }
}

const SENTENCE: Record<CameraErrorKind, string> = {
  camera_stack_broken: 'cannot start: its camera libraries are broken',
  permission_denied: 'may not open the camera (permission denied)',
  camera_busy: 'cannot open the camera: it is in use by another process',
  no_camera: 'found no camera',
};

/**
 * Recognises a camera failure from the program's last stderr lines (oldest
 * first) and its exit; undefined when nothing matches (an unrecognised
 * failure is then reported with its exit status and last line as before).
 * An exit code 127 with no matching line still means the loader could not
 * start the program (`camera_stack_broken`).
 */
export function recogniseCameraError(
  program: string,
  stderr: readonly string[],
  exit?: ProgramExit,
  options: { readonly user?: string; readonly device?: string } = {},
): CameraError | undefined {
  const user = options.user ?? safeUserName();
  const device = options.device ?? 'the camera';
  for (const { kind, re } of PATTERNS) {
    const line = stderr.find((l) => re.test(l));
    if (line !== undefined) return { kind, message: `${program} ${SENTENCE[kind]}: ${line.trim()}`, hint: hintFor(kind, user, device), line };
  }
  if (exit?.code === 127) {
    return {
      kind: 'camera_stack_broken',
      message: `${program} ${SENTENCE.camera_stack_broken} (exit status 127)`,
      hint: hintFor('camera_stack_broken', user, device),
    };
  }
  return undefined;
}

function safeUserName(): string {
  try {
    return os.userInfo().username;
  } catch {
    return String(process.getuid?.() ?? 'the service user');
  }
}
