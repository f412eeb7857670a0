//! The application state every handler works with: the live configuration, the stores,
//! and password hashing. It knows nothing of Pingora; `proxy` holds one and hands
//! it to `endpoints` and `auth`.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::live::Live;
use crate::password::Passwords;
use crate::revocation::Revocations;
use crate::store::{ChallengeStore, DeviceStore, LoginStore, SessionStore, UserStore};

pub struct App {
    pub live: Arc<ArcSwap<Live>>,
    pub users: Arc<dyn UserStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub challenges: Arc<dyn ChallengeStore>,
    pub devices: Arc<dyn DeviceStore>,
    /// Single sign-on logins between start and callback.
    pub logins: Arc<dyn LoginStore>,
    /// The `issuedBefore` cut-off every token is checked against.
    pub revocations: Arc<Revocations>,
    pub passwords: Arc<Passwords>,
}
