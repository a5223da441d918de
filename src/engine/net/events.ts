// The `event` notification's network payload (protocol spec 2.8).
export interface NetworkEvent {
  method: string;
  url: string;
  host: string;
  status_code: number;
  request_bytes: number;
  response_bytes: number;
  duration_ms: number;
  blocked: boolean;
  block_reason?: string;
}

export type NetworkEventSink = (event: NetworkEvent) => void;

export const BlockReason = {
  HOST: "host not in allowlist",
  SECRET: "secret placeholder sent to unauthorized host",
  PRIVATE: "destination resolves to a private address",
} as const;
