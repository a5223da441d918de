// Upstream SDK's names for the network hook phases and actions, typed as their literals.
export const NETWORK_HOOK_PHASE_BEFORE = "before" as const;
export const NETWORK_HOOK_PHASE_AFTER = "after" as const;
export const NETWORK_HOOK_ACTION_ALLOW = "allow" as const;
export const NETWORK_HOOK_ACTION_BLOCK = "block" as const;
export const NETWORK_HOOK_ACTION_MUTATE = "mutate" as const;
