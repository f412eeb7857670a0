//! How a user record is shown to each client family: `profile` (seed 000) and `user` + `firm`
//! (seed 003). The gateway owns identity fields; everything else comes from the record's
//! free-form data, so backends keep the fields they already serve.

use serde_json::{Map, Value, json};

pub use crate::model::Family;
use crate::model::{Org, User};

/// The body of a successful sign-in for `family`.
pub fn signed_in(family: Family, token: &str, user: &User, org: Option<&Org>) -> Value {
    match family {
        Family::Profile => json!({ "token": token, "profile": profile(user, org) }),
        Family::UserFirm => json!({ "token": token, "user": self::user(user), "firm": firm(org) }),
    }
}

/// The seed-000 `profile`, with `institution` for the user's organization.
pub fn profile(user: &User, org: Option<&Org>) -> Value {
    let mut p: Map<String, Value> = user.profile.clone();
    p.insert("_id".into(), json!(user.id));
    p.insert("email".into(), json!(user.email));
    p.insert("fname".into(), json!(user.first_name));
    p.insert("lname".into(), json!(user.last_name));
    p.insert("accountType".into(), json!(user.account_type.as_str()));
    p.insert("customerId".into(), json!(user.customer_id));
    p.entry("permissions").or_insert_with(|| json!([]));
    p.insert("institution".into(), institution(org));
    Value::Object(p)
}

fn institution(org: Option<&Org>) -> Value {
    let Some(org) = org else {
        return Value::Null;
    };
    let mut i: Map<String, Value> = org.extra.clone();
    i.insert("_id".into(), json!(org.id));
    i.insert("id".into(), json!(org.id));
    i.insert("name".into(), json!(org.name));
    i.insert("status".into(), json!(org.status));
    Value::Object(i)
}

/// The seed-003 `user`.
pub fn user(user: &User) -> Value {
    json!({
        "id": user.id,
        "email": user.email,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "role": user.account_type.as_str(),
        "firmId": user.org,
    })
}

/// The seed-003 `firm`: the same organization record as `profile.institution`.
pub fn firm(org: Option<&Org>) -> Value {
    match org {
        None => Value::Null,
        Some(org) => json!({
            "id": org.id,
            "name": org.name,
            "subscriptionTier": org.subscription_tier,
            "subscriptionExpiry": org
                .subscription_expiry
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccountType, Status};

    fn sample() -> (User, Org) {
        let mut extra = Map::new();
        extra.insert("picture".into(), json!("logo.png"));
        extra.insert("name".into(), json!("spoofed by extra"));
        let org = Org {
            id: "o1".into(),
            name: "Doe & Associates".into(),
            status: Status::Active,
            subscription_tier: "professional".into(),
            subscription_expiry: Some("2027-01-15T00:00:00Z".parse().unwrap()),
            extra,
        };
        let mut profile = Map::new();
        profile.insert("credits".into(), json!(123));
        profile.insert("_id".into(), json!("spoofed by profile"));
        let user = User {
            id: "u1".into(),
            email: "john@example.com".into(),
            password_hash: String::new(),
            first_name: "John".into(),
            last_name: "Doe".into(),
            account_type: AccountType::Admin,
            customer_id: "cus_1".into(),
            org: "o1".into(),
            status: Status::Active,
            mfa_enabled: false,
            profile,
        };
        (user, org)
    }

    #[test]
    fn profile_has_seed_000_shape_and_owned_fields_win() {
        let (u, o) = sample();
        let p = profile(&u, Some(&o));
        assert_eq!(p["_id"], "u1");
        assert_eq!(p["fname"], "John");
        assert_eq!(p["lname"], "Doe");
        assert_eq!(p["accountType"], "admin");
        assert_eq!(p["customerId"], "cus_1");
        assert_eq!(p["permissions"], json!([]));
        assert_eq!(p["credits"], 123);
        assert_eq!(p["institution"]["_id"], "o1");
        assert_eq!(p["institution"]["name"], "Doe & Associates");
        assert_eq!(p["institution"]["picture"], "logo.png");
        assert!(p.get("password_hash").is_none());
    }

    #[test]
    fn user_and_firm_have_seed_003_shape() {
        let (u, o) = sample();
        assert_eq!(
            user(&u),
            json!({"id":"u1","email":"john@example.com","firstName":"John","lastName":"Doe","role":"admin","firmId":"o1"})
        );
        assert_eq!(
            firm(Some(&o)),
            json!({"id":"o1","name":"Doe & Associates","subscriptionTier":"professional","subscriptionExpiry":"2027-01-15T00:00:00Z"})
        );
    }
}
