//! The users file (`conf/users.toml`): loading with validation, and atomic write-back.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{IdentityLink, Org, User, normalize_email};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default)]
    pub orgs: Vec<Org>,
    #[serde(default)]
    pub users: Vec<User>,
    /// Identity-provider accounts linked to users by single sign-on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<IdentityLink>,
}

#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl UsersFile {
    pub fn load(path: &Path) -> Result<UsersFile, UsersFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        UsersFile::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<UsersFile, UsersFileError> {
        let invalid = |key: String, message: String| UsersFileError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| invalid("<syntax>".into(), e.to_string()))?;
        let mut file: UsersFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            invalid(key, e.into_inner().message().to_string())
        })?;

        let mut org_ids = HashSet::new();
        for (i, org) in file.orgs.iter().enumerate() {
            if !org_ids.insert(org.id.as_str()) {
                return Err(invalid(
                    format!("orgs[{i}].id"),
                    format!("`{}` is used twice", org.id),
                ));
            }
        }
        let mut ids = HashSet::new();
        let mut emails = HashSet::new();
        for (i, user) in file.users.iter_mut().enumerate() {
            if !ids.insert(user.id.clone()) {
                return Err(invalid(
                    format!("users[{i}].id"),
                    format!("`{}` is used twice", user.id),
                ));
            }
            user.email = normalize_email(&user.email);
            if !user.email.contains('@') {
                return Err(invalid(
                    format!("users[{i}].email"),
                    format!("`{}` is not an email address", user.email),
                ));
            }
            if !emails.insert(user.email.clone()) {
                return Err(invalid(
                    format!("users[{i}].email"),
                    format!("`{}` is used twice", user.email),
                ));
            }
            if !org_ids.contains(user.org.as_str()) {
                return Err(invalid(
                    format!("users[{i}].org"),
                    format!("no org has id `{}`", user.org),
                ));
            }
            if !crate::password::is_supported_hash(&user.password_hash) {
                return Err(invalid(
                    format!("users[{i}].password_hash"),
                    "is not an argon2id ($argon2id$...) or bcrypt ($2b$...) hash; make one with `authgate hash-password`".into(),
                ));
            }
        }
        let mut identities = HashSet::new();
        for (i, link) in file.links.iter().enumerate() {
            if !ids.contains(&link.user) {
                return Err(invalid(
                    format!("links[{i}].user"),
                    format!("no user has id `{}`", link.user),
                ));
            }
            if !identities.insert((link.issuer.as_str(), link.subject.as_str())) {
                return Err(invalid(
                    format!("links[{i}].subject"),
                    format!("`{}` at `{}` is linked twice", link.subject, link.issuer),
                ));
            }
        }
        Ok(file)
    }

    /// Write the file so that a crash leaves either the old or the new content, never a mix:
    /// temporary file in the same directory, fsync, rename, fsync of the directory.
    pub fn save_atomic(&self, path: &Path) -> std::io::Result<()> {
        let text = toml::to_string_pretty(self).map_err(std::io::Error::other)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "users.toml".into());
        let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[[orgs]]
id = "o1"
name = "Org"

[[users]]
id = "u1"
email = "A@Example.com "
password_hash = "$2b$04$abcdefghijklmnopqrstuuJ3c0iLrqgAFw3zYx3H6pvDnO3fl0b7a"
account_type = "user"
org = "o1"
"#;

    #[test]
    fn loads_and_normalizes_email() {
        let f = UsersFile::parse(SAMPLE, Path::new("u.toml")).unwrap();
        assert_eq!(f.users[0].email, "a@example.com");
    }

    #[test]
    fn unknown_org_is_named() {
        let text = SAMPLE.replace("org = \"o1\"", "org = \"o2\"");
        let err = UsersFile::parse(&text, Path::new("u.toml")).unwrap_err();
        assert!(err.to_string().contains("users[0].org"), "{err}");
    }

    #[test]
    fn bad_account_type_is_named() {
        let text = SAMPLE.replace("account_type = \"user\"", "account_type = \"root\"");
        let err = UsersFile::parse(&text, Path::new("u.toml")).unwrap_err();
        assert!(err.to_string().contains("users[0].account_type"), "{err}");
    }

    #[test]
    fn links_name_existing_users_once() {
        let link = "\n[[links]]\nissuer = \"https://idp\"\nsubject = \"s1\"\nuser = \"u1\"\n";
        let f = UsersFile::parse(&format!("{SAMPLE}{link}"), Path::new("u.toml")).unwrap();
        assert_eq!(f.links[0].subject, "s1");
        let text = format!("{SAMPLE}{}", link.replace("u1", "u9"));
        let err = UsersFile::parse(&text, Path::new("u.toml")).unwrap_err();
        assert!(err.to_string().contains("links[0].user"), "{err}");
        let twice = format!("{SAMPLE}{link}{link}");
        let err = UsersFile::parse(&twice, Path::new("u.toml")).unwrap_err();
        assert!(err.to_string().contains("links[1]"), "{err}");
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let f = UsersFile::parse(SAMPLE, Path::new("u.toml")).unwrap();
        f.save_atomic(&path).unwrap();
        let again = UsersFile::load(&path).unwrap();
        assert_eq!(again.users[0].id, "u1");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
