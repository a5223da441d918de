// Every JSON-RPC method and notification name, for the SDK (which sends them) and the engine
// (which dispatches on them): a new method is added here first. The spec's methods are in
// ../shared/matchlock-protocol.md; the file_* ones are this engine's streamed-transfer extension,
// and remove_file, make_dir, rename_file and stat_file its file-operations extension.

export const Method = {
  CREATE: "create",
  EXEC: "exec",
  EXEC_STREAM: "exec_stream",
  EXEC_PIPE: "exec_pipe",
  EXEC_TTY: "exec_tty",
  /** Our extension: stdin for an exec_pipe/exec_tty whose reply says "send more" (flow control without holding the reader). */
  EXEC_WRITE: "exec_write",
  /** Our extension: a signal to an exec_pipe/exec_tty command's process group. */
  EXEC_SIGNAL: "exec_signal",
  WRITE_FILE: "write_file",
  READ_FILE: "read_file",
  LIST_FILES: "list_files",
  CLOSE: "close",
  CANCEL: "cancel",
  SET_TIMEOUT: "set_timeout",
  LOG: "log",
  LOG_STREAM: "log_stream",
  /** Our extension (resident engine): this session serves another session's running sandbox. */
  ATTACH: "attach",
  /** Our extension (resident engine): this session's sandbox outlives the connection. */
  DETACH: "detach",
  PORT_FORWARD: "port_forward",
  ALLOW_LIST_ADD: "allow_list_add",
  ALLOW_LIST_DELETE: "allow_list_delete",
  /** Our extension: the engine's protocol version, asked first by our SDK. */
  HANDSHAKE: "handshake",
  WRITE_FILE_OPEN: "write_file_open",
  WRITE_FILE_CHUNK: "write_file_chunk",
  WRITE_FILE_CLOSE: "write_file_close",
  READ_FILE_OPEN: "read_file_open",
  READ_FILE_CHUNK: "read_file_chunk",
  FILE_ABORT: "file_abort",
  /** Our extension: file operations beside read, write and list (docs/files.md). */
  REMOVE_FILE: "remove_file",
  MAKE_DIR: "make_dir",
  RENAME_FILE: "rename_file",
  STAT_FILE: "stat_file",
} as const;

export type MethodName = (typeof Method)[keyof typeof Method];

/** The streamed-transfer methods (a protocol extension), served by one handler in the engine. */
export const TRANSFER_METHODS: ReadonlySet<string> = new Set<MethodName>([
  Method.WRITE_FILE_OPEN, Method.WRITE_FILE_CHUNK, Method.WRITE_FILE_CLOSE, Method.READ_FILE_OPEN, Method.READ_FILE_CHUNK, Method.FILE_ABORT,
]);

/**
 * Client -> engine input of a running exec_pipe/exec_tty: handled in the reader, in order, and
 * never answered (even when they carry an id).
 */
export const Input = {
  PIPE_STDIN: "exec_pipe.stdin",
  PIPE_STDIN_EOF: "exec_pipe.stdin_eof",
  TTY_STDIN: "exec_tty.stdin",
  TTY_STDIN_EOF: "exec_tty.stdin_eof",
  TTY_RESIZE: "exec_tty.resize",
} as const;

export const INPUT_METHODS: ReadonlySet<string> = new Set<string>(Object.values(Input));
/** The file operations beside read, write and list (a protocol extension), served by one handler in the engine. */
export const FILE_OP_METHODS: ReadonlySet<string> = new Set<MethodName>([
  Method.REMOVE_FILE, Method.MAKE_DIR, Method.RENAME_FILE, Method.STAT_FILE,
]);

export const Notification = {
  EXEC_STDOUT: "exec_stream.stdout",
  EXEC_STDERR: "exec_stream.stderr",
  LOG_STREAM_DATA: "log_stream.data",
  PIPE_READY: "exec_pipe.ready",
  PIPE_STDOUT: "exec_pipe.stdout",
  PIPE_STDERR: "exec_pipe.stderr",
  TTY_READY: "exec_tty.ready",
  TTY_STDOUT: "exec_tty.stdout",
  EVENT: "event",
} as const;
