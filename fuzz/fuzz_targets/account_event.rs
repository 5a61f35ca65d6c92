//! Account lifecycle events (shared/src/events.rs): any text, and any JSON value put where the
//! accepted events carry the account. An accepted account is always 12 ASCII digits, and no
//! message repeats a control character (no forged log lines).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use trailkeeper::events::{
    AccountEvent, CONTROL_TOWER_SOURCE, EventError, ORGANIZATIONS_SOURCE, Onboarding,
    SERVICE_EVENT_DETAIL_TYPE,
};

fn check(r: Result<Onboarding, EventError>) {
    let message = match r {
        Ok(Onboarding::Account { account, .. } | Onboarding::Offboard { account, .. }) => {
            let id = account.as_str();
            assert!(
                id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()),
                "{id:?}"
            );
            return;
        }
        Ok(Onboarding::Ignored { reason }) => reason,
        Err(e) => e.to_string(),
    };
    assert!(
        !message.chars().any(char::is_control),
        "a control character in {message:?}"
    );
}

fn envelope(source: &str, detail: Value) -> Value {
    json!({
        "version": "0", "id": "c2a0a3d6-0f3f-4f4c-9d38-4b0e0f0d0b0a",
        "detail-type": SERVICE_EVENT_DETAIL_TYPE, "source": source,
        "account": "111111111111", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
        "resources": [], "detail": detail,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(AccountEvent::parse_str(text));
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return;
    };
    check(AccountEvent::parse(&json!({ "accountId": v })));
    check(AccountEvent::parse(&envelope(
        ORGANIZATIONS_SOURCE,
        json!({"eventName": "CreateAccountResult", "requestParameters": "None",
               "serviceEventDetails": {"createAccountStatus": v}}),
    )));
    check(AccountEvent::parse(&envelope(
        ORGANIZATIONS_SOURCE,
        json!({"eventName": "CreateAccountResult",
               "serviceEventDetails": {"createAccountStatus": {"state": "SUCCEEDED", "accountId": v}}}),
    )));
    for name in ["CreateManagedAccount", "UpdateManagedAccount"] {
        let member = if name == "CreateManagedAccount" {
            "createManagedAccountStatus"
        } else {
            "updateManagedAccountStatus"
        };
        check(AccountEvent::parse(&envelope(
            CONTROL_TOWER_SOURCE,
            json!({"eventName": name, "requestParameters": "None", "serviceEventDetails": { member: v }}),
        )));
        check(AccountEvent::parse(&envelope(
            CONTROL_TOWER_SOURCE,
            json!({"eventName": name, "serviceEventDetails": { member: {"state": "SUCCEEDED", "account": {"accountId": v}}}}),
        )));
    }
    // Membership events carry the account next to the method.
    for (name, method, value) in [
        ("AccountJoinedOrganization", "joinedMethod", "Invited"),
        ("AccountDepartedOrganization", "departedMethod", "Removed"),
    ] {
        check(AccountEvent::parse(&envelope(
            ORGANIZATIONS_SOURCE,
            json!({"eventName": name, "serviceEventDetails": {"accountId": v, method: value}}),
        )));
        check(AccountEvent::parse(&envelope(
            ORGANIZATIONS_SOURCE,
            json!({"eventName": name, "serviceEventDetails": {"accountId": "012345678901", method: v}}),
        )));
    }
    check(AccountEvent::parse(&envelope(
        ORGANIZATIONS_SOURCE,
        json!({"eventName": "CloseAccountResult",
               "serviceEventDetails": {"closeAccountStatus": {"state": "SUCCEEDED", "accountId": v}}}),
    )));
    check(AccountEvent::parse(&envelope(ORGANIZATIONS_SOURCE, v)));
});
