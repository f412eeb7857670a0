//! TLS: the certificates the TLS listener presents (chosen by SNI, replaced without a restart),
//! its rustls configuration (TLS 1.2 and 1.3 only, ALPN `h2` then `http/1.1`), and the CA files
//! upstreams are verified against.
//!
//! Every handshake asks one `Resolver` for a certificate, and the resolver reads the set in force
//! from an `ArcSwap`: a reload stores a new set, which the next handshake sees, while open
//! connections keep the keys they were set up with.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::tls::CaType;
use pingora::utils::tls::WrappedX509;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::{CertFiles, Config, TlsSettings};

/// Why a certificate, key or CA file cannot be used. Each names the configuration key and the
/// file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {}: {source}", path.display())]
    Read {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key}: {} holds no PEM certificate", path.display())]
    NoCertificate { key: String, path: PathBuf },
    #[error("{key}: {}: {message}", path.display())]
    BadCertificate {
        key: String,
        path: PathBuf,
        message: String,
    },
    #[error("{key}: {} holds no PEM private key", path.display())]
    NoKey { key: String, path: PathBuf },
    #[error("{key}: {} is not a usable private key: {message}", path.display())]
    BadKey {
        key: String,
        path: PathBuf,
        message: String,
    },
    #[error(
        "{key}: the private key in {} does not match the certificate in {}",
        key_file.display(),
        cert_file.display()
    )]
    Mismatch {
        key: String,
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    #[error("cannot set up TLS: {0}")]
    Setup(#[from] rustls::Error),
}

/// The certificates of the TLS listener, shared by every handshake and by reloads.
pub struct Certificates {
    resolver: Arc<Resolver>,
}

impl Certificates {
    /// Read and check every certificate and key of `settings`.
    pub fn load(settings: &TlsSettings) -> Result<Certificates, TlsError> {
        let files = Files::read(settings)?;
        let set = CertSet::parse(settings, &files)?;
        Ok(Certificates {
            resolver: Arc::new(Resolver(ArcSwap::from_pointee(set))),
        })
    }

    /// The handshake half of the TLS listener: TLS 1.2 and 1.3, certificates from this set.
    pub fn acceptor(&self) -> Result<Acceptor, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&self.resolver) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Stateless resumption: a returning client skips the key exchange and the certificate.
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        Ok(Acceptor::from_server_config(Arc::new(config)))
    }

    /// Read the files of `settings` again and, if any changed, put them in force for the next
    /// handshakes. `Ok(false)`: the files are as they were. On error the set in force stays.
    pub fn reload(&self, settings: &TlsSettings) -> Result<bool, TlsError> {
        let files = Files::read(settings)?;
        if files.digest == self.resolver.0.load().digest {
            return Ok(false);
        }
        let set = CertSet::parse(settings, &files)?;
        self.resolver.0.store(Arc::new(set));
        Ok(true)
    }
}

/// Check every certificate, key and CA file `config` names, as `check-config` and the start do.
/// Returns what an operator should hear about: certificates out of their validity period, and
/// SNI hosts their certificate does not name.
pub fn check(config: &Config) -> Result<Vec<String>, TlsError> {
    let mut warnings = Vec::new();
    if let Some(settings) = &config.server.tls {
        let files = Files::read(settings)?;
        CertSet::parse(settings, &files)?;
        let now = chrono::Utc::now().timestamp();
        for (key, pair, host, (cert, _)) in files.pairs(settings) {
            let key = format!("{key}.cert_file");
            if let Some(warning) = leaf_warning(&key, &pair.cert_file, cert, host, now) {
                warnings.push(warning);
            }
        }
    }
    for (i, upstream) in config.upstreams.iter().enumerate() {
        if let Some(path) = upstream.tls.as_ref().and_then(|t| t.ca_file.as_deref()) {
            load_ca(&format!("upstreams[{i}].ca_file"), path)?;
        }
    }
    Ok(warnings)
}

/// The CA certificates of `path` (PEM), for upstream peers to be verified against.
pub fn load_ca(key: &str, path: &Path) -> Result<Arc<CaType>, TlsError> {
    let pem = read(key, path)?;
    let ders = certificates(key, path, &pem)?;
    let mut roots = rustls::RootCertStore::empty();
    let mut cas = Vec::with_capacity(ders.len());
    for der in ders {
        let bad = |message: String| TlsError::BadCertificate {
            key: key.into(),
            path: path.into(),
            message,
        };
        // Checked as the connector will use it, and parsed as Pingora keeps it.
        roots
            .add(der.clone())
            .map_err(|e| bad(format!("not a CA certificate: {e}")))?;
        let ca = WrappedX509::try_new(der.to_vec(), |raw| {
            X509Certificate::from_der(raw).map(|(_, cert)| cert)
        })
        .map_err(|e| bad(e.to_string()))?;
        cas.push(ca);
    }
    Ok(Arc::from(cas))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key: key.into(),
        path: path.into(),
        source,
    })
}

fn certificates(
    key: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            key: key.into(),
            path: path.into(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            key: key.into(),
            path: path.into(),
        });
    }
    Ok(certs)
}

/// A certificate file's bytes and its key file's.
type Contents = (Vec<u8>, Vec<u8>);

/// The bytes of every certificate and key file of the settings.
struct Files {
    default: Contents,
    /// In the order of `[[server.tls.sni]]`.
    sni: Vec<Contents>,
    digest: [u8; 32],
}

impl Files {
    fn read(settings: &TlsSettings) -> Result<Files, TlsError> {
        let mut digest = Sha256::new();
        let mut read_pair = |key: &str, pair: &CertFiles| -> Result<Contents, TlsError> {
            let cert = read(&format!("{key}.cert_file"), &pair.cert_file)?;
            let private = read(&format!("{key}.key_file"), &pair.key_file)?;
            for bytes in [&cert, &private] {
                digest.update((bytes.len() as u64).to_le_bytes());
                digest.update(bytes);
            }
            Ok((cert, private))
        };
        let default = read_pair("server.tls", &settings.default)?;
        let sni = settings
            .sni
            .iter()
            .enumerate()
            .map(|(i, s)| read_pair(&format!("server.tls.sni[{i}]"), &s.files))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Files {
            default,
            sni,
            digest: digest.finalize().into(),
        })
    }

    /// Every pair with the configuration key it sits under and, for an SNI entry, its host.
    fn pairs<'a>(
        &'a self,
        settings: &'a TlsSettings,
    ) -> impl Iterator<Item = (String, &'a CertFiles, Option<&'a str>, &'a Contents)> {
        std::iter::once((
            "server.tls".to_string(),
            &settings.default,
            None,
            &self.default,
        ))
        .chain(settings.sni.iter().zip(&self.sni).enumerate().map(
            |(i, (s, contents))| {
                (
                    format!("server.tls.sni[{i}]"),
                    &s.files,
                    Some(s.host.as_str()),
                    contents,
                )
            },
        ))
    }
}

/// The certificates in force, by the name a client asks for.
#[derive(Debug)]
struct CertSet {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com`, under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Of the files this set was read from, to tell a change on disk from an unrelated event.
    digest: [u8; 32],
}

impl CertSet {
    fn parse(settings: &TlsSettings, files: &Files) -> Result<CertSet, TlsError> {
        let provider = provider();
        let (cert, private) = &files.default;
        let default = certified("server.tls", &settings.default, cert, private, &provider)?;
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, (sni, (cert, private))) in settings.sni.iter().zip(&files.sni).enumerate() {
            let key = format!("server.tls.sni[{i}]");
            let certified = certified(&key, &sni.files, cert, private, &provider)?;
            match sni.host.strip_prefix("*.") {
                Some(domain) => wildcard.insert(domain.to_string(), certified),
                None => exact.insert(sni.host.clone(), certified),
            };
        }
        Ok(CertSet {
            default,
            exact,
            wildcard,
            digest: files.digest,
        })
    }

    /// The certificate for `name` (rustls hands it over in lower case): its own, a wildcard
    /// one for its parent domain, or the default.
    fn for_name(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = name else {
            return &self.default;
        };
        if let Some(key) = self.exact.get(name) {
            return key;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

fn certified(
    key: &str,
    pair: &CertFiles,
    cert: &[u8],
    private: &[u8],
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates(&format!("{key}.cert_file"), &pair.cert_file, cert)?;
    let key_key = format!("{key}.key_file");
    let bad_key = |message: String| TlsError::BadKey {
        key: key_key.clone(),
        path: pair.key_file.clone(),
        message,
    };
    let private = match PrivateKeyDer::from_pem_slice(private) {
        Ok(private) => private,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                key: key_key,
                path: pair.key_file.clone(),
            });
        }
        Err(e) => return Err(bad_key(e.to_string())),
    };
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| bad_key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::Mismatch {
                key: key.into(),
                cert_file: pair.cert_file.clone(),
                key_file: pair.key_file.clone(),
            })
        }
        Err(e) => Err(TlsError::BadCertificate {
            key: format!("{key}.cert_file"),
            path: pair.cert_file.clone(),
            message: e.to_string(),
        }),
    }
}

/// Hands every handshake the certificate for the name the client asked for.
#[derive(Debug)]
struct Resolver(ArcSwap<CertSet>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.0.load().for_name(hello.server_name())))
    }
}

/// What is wrong with the end-entity certificate of `pem` that still lets it serve: outside its
/// validity period, or not naming `host`.
fn leaf_warning(
    key: &str,
    path: &Path,
    pem: &[u8],
    host: Option<&str>,
    now: i64,
) -> Option<String> {
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let (_, cert) = X509Certificate::from_der(&der).ok()?;
    let validity = cert.validity();
    let shown = path.display();
    if validity.not_after.timestamp() < now {
        return Some(format!(
            "{key}: the certificate in {shown} expired on {}",
            validity.not_after
        ));
    }
    if validity.not_before.timestamp() > now {
        return Some(format!(
            "{key}: the certificate in {shown} is not valid before {}",
            validity.not_before
        ));
    }
    let host = host?;
    let names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    (!names.iter().any(|name| name_covers(name, host))).then(|| {
        format!(
            "{key}: the certificate in {shown} does not name {host} (it names {})",
            if names.is_empty() {
                "no DNS host".to_string()
            } else {
                names.join(", ")
            }
        )
    })
}

/// Whether a certificate's DNS name covers a configured SNI host (either may be a wildcard).
fn name_covers(cert_name: &str, host: &str) -> bool {
    if cert_name == host {
        return true;
    }
    match (cert_name.strip_prefix("*."), host.split_once('.')) {
        (Some(domain), Some((label, parent))) => label != "*" && parent == domain,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SniCert;

    struct Pair {
        der: Vec<u8>,
        cert_pem: String,
        key_pem: String,
    }

    fn pair(names: &[&str]) -> Pair {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pair {
            der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn write(dir: &Path, name: &str, p: &Pair) -> CertFiles {
        let cert_file = dir.join(format!("{name}.crt"));
        let key_file = dir.join(format!("{name}.key"));
        std::fs::write(&cert_file, &p.cert_pem).unwrap();
        std::fs::write(&key_file, &p.key_pem).unwrap();
        CertFiles {
            cert_file,
            key_file,
        }
    }

    fn settings(default: CertFiles, sni: Vec<(&str, CertFiles)>) -> TlsSettings {
        TlsSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            default,
            sni: sni
                .into_iter()
                .map(|(host, files)| SniCert {
                    host: host.into(),
                    files,
                })
                .collect(),
        }
    }

    fn served(certs: &Certificates, name: Option<&str>) -> Vec<u8> {
        certs.resolver.0.load().for_name(name).cert[0].to_vec()
    }

    #[test]
    fn names_choose_their_certificate_and_others_get_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let (main, api, any) = (
            pair(&["main.test"]),
            pair(&["api.test"]),
            pair(&["*.apps.test"]),
        );
        let s = settings(
            write(dir.path(), "main", &main),
            vec![
                ("api.test", write(dir.path(), "api", &api)),
                ("*.apps.test", write(dir.path(), "apps", &any)),
            ],
        );
        let certs = Certificates::load(&s).unwrap();
        assert_eq!(served(&certs, Some("api.test")), api.der);
        assert_eq!(served(&certs, Some("one.apps.test")), any.der);
        assert_eq!(
            served(&certs, Some("a.b.apps.test")),
            main.der,
            "one label only"
        );
        assert_eq!(served(&certs, Some("apps.test")), main.der);
        assert_eq!(served(&certs, Some("other.test")), main.der);
        assert_eq!(served(&certs, None), main.der);
        assert!(certs.acceptor().is_ok());
    }

    #[test]
    fn a_reload_swaps_only_changed_files_and_keeps_the_set_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (pair(&["main.test"]), pair(&["main.test"]));
        let s = settings(write(dir.path(), "main", &first), vec![]);
        let certs = Certificates::load(&s).unwrap();
        assert!(!certs.reload(&s).unwrap(), "nothing changed");
        // A certificate written before its key: refused, the old pair stays.
        std::fs::write(&s.default.cert_file, &second.cert_pem).unwrap();
        assert!(matches!(certs.reload(&s), Err(TlsError::Mismatch { .. })));
        assert_eq!(served(&certs, None), first.der);
        std::fs::write(&s.default.key_file, &second.key_pem).unwrap();
        assert!(certs.reload(&s).unwrap());
        assert_eq!(served(&certs, None), second.der);
    }

    #[test]
    fn bad_files_are_refused_naming_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (pair(&["a.test"]), pair(&["b.test"]));
        let good = write(dir.path(), "a", &a);
        let other = write(dir.path(), "b", &b);
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem at all").unwrap();
        let cases = [
            (
                CertFiles {
                    cert_file: missing.clone(),
                    ..good.clone()
                },
                "server.tls.cert_file: cannot read",
                missing.display().to_string(),
            ),
            (
                CertFiles {
                    cert_file: garbage.clone(),
                    ..good.clone()
                },
                "server.tls.cert_file",
                format!("{} holds no PEM certificate", garbage.display()),
            ),
            (
                CertFiles {
                    key_file: garbage.clone(),
                    ..good.clone()
                },
                "server.tls.key_file",
                format!("{} holds no PEM private key", garbage.display()),
            ),
            (
                CertFiles {
                    key_file: other.key_file.clone(),
                    ..good.clone()
                },
                "server.tls: the private key",
                format!(
                    "{} does not match the certificate in {}",
                    other.key_file.display(),
                    good.cert_file.display()
                ),
            ),
        ];
        for (files, key, file) in cases {
            let err = Certificates::load(&settings(files, vec![]))
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(key) && err.contains(&file), "{err}");
        }
        let err = Certificates::load(&settings(
            good.clone(),
            vec![(
                "b.test",
                CertFiles {
                    cert_file: missing.clone(),
                    ..other
                },
            )],
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(err.starts_with("server.tls.sni[0].cert_file"), "{err}");
    }

    #[test]
    fn warnings_for_names_and_dates() {
        let p = pair(&["api.test", "*.apps.test"]);
        let path = Path::new("c.pem");
        let now = chrono::Utc::now().timestamp();
        let warn = |host, now| leaf_warning("k", path, p.cert_pem.as_bytes(), host, now);
        assert_eq!(warn(Some("api.test"), now), None);
        assert_eq!(warn(Some("x.apps.test"), now), None);
        assert_eq!(warn(Some("*.apps.test"), now), None);
        assert!(
            warn(Some("other.test"), now)
                .unwrap()
                .contains("does not name other.test")
        );
        // rcgen's defaults: valid from 1975 to 4096.
        let year = 365 * 86_400;
        assert!(
            warn(None, now + 3000 * year)
                .unwrap()
                .contains("expired on")
        );
        assert!(warn(None, 0).unwrap().contains("is not valid before"));
    }

    #[test]
    fn ca_files_load_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.pem()).unwrap();
        assert_eq!(load_ca("upstreams[0].ca_file", &path).unwrap().len(), 1);
        std::fs::write(&path, "junk").unwrap();
        let err = load_ca("upstreams[0].ca_file", &path).err().unwrap();
        assert!(
            err.to_string().starts_with("upstreams[0].ca_file:"),
            "{err}"
        );
    }
}
