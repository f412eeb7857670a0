//! The Lua scripts: every change that must be atomic runs as one script (`scripts/*.lua`).

use redis::Script;

/// Store a session (or trusted device) and index it under its user; the index lives as long as
/// its longest-lived member.
const CREATE_SESSION: &str = include_str!("scripts/create_session.lua");

/// Move a live session's expiry (record and key TTL together); 0 when it is gone.
const EXTEND_SESSION: &str = include_str!("scripts/extend_session.lua");

/// Claim the email, then write the user and their new organization, if any; 0 when the email
/// is taken.
const CREATE_USER: &str = include_str!("scripts/create_user.lua");

const REVOKE_SESSION: &str = include_str!("scripts/revoke_session.lua");

/// Delete every member of a user's index (sessions or devices) but ARGV[2], returning the ids
/// deleted. Every key of the user shares the user's hash tag, so this stays in one slot.
const REVOKE_USER: &str = include_str!("scripts/revoke_user.lua");

/// Delete a key only while it holds the given value (a session's owner index, which must not be
/// removed on behalf of another user).
const DELETE_IF: &str = include_str!("scripts/delete_if.lua");

/// Raise a number to a given value unless it is higher already (the `issuedBefore` cut-off,
/// which only ever rises); returns the value held.
const RAISE: &str = include_str!("scripts/raise.lua");

/// GCRA, the algorithm `governor` runs in process: a burst of `burst`, one slot back every
/// `emission` ms. Redis's own clock is used so that instances with skewed clocks agree.
/// Returns 0 when allowed, else the milliseconds to wait.
const RATE_LIMIT: &str = include_str!("scripts/rate_limit.lua");

/// One guess at an MFA code: compare, and count a wrong one, atomically; the right code
/// deletes the challenge. Returns {0} unknown, {2} exhausted, {3, remaining} wrong, {1, record}.
const ATTEMPT: &str = include_str!("scripts/attempt.lua");

/// Count one attempt under the account key and the account-and-address key, unless either is
/// at its limit: then return the milliseconds left in its window, counting nothing. A key's
/// window starts with its first attempt.
const RESERVE_ATTEMPT: &str = include_str!("scripts/reserve_attempt.lua");

/// Link an identity-provider account to a user, unless the account is linked already (its
/// owner comes back) or the user has another account at that issuer.
const LINK_IDENTITY: &str = include_str!("scripts/link_identity.lua");

pub(super) struct Scripts {
    pub(super) attempt: Script,
    pub(super) create_user: Script,
    pub(super) delete_if: Script,
    pub(super) raise: Script,
    pub(super) create_session: Script,
    pub(super) extend_session: Script,
    pub(super) link_identity: Script,
    pub(super) revoke_session: Script,
    pub(super) revoke_user: Script,
    pub(super) rate_limit: Script,
    pub(super) reserve_attempt: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            attempt: Script::new(ATTEMPT),
            create_user: Script::new(CREATE_USER),
            delete_if: Script::new(DELETE_IF),
            raise: Script::new(RAISE),
            create_session: Script::new(CREATE_SESSION),
            extend_session: Script::new(EXTEND_SESSION),
            link_identity: Script::new(LINK_IDENTITY),
            revoke_session: Script::new(REVOKE_SESSION),
            revoke_user: Script::new(REVOKE_USER),
            rate_limit: Script::new(RATE_LIMIT),
            reserve_attempt: Script::new(RESERVE_ATTEMPT),
        }
    }
}
