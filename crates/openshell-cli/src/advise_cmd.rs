//! `openshell policy advise SANDBOX [--apply]`: the sandbox's denials (its audit
//! log) turned into the smallest policy change that allows them
//! (`openshell_policy::advise`), shown as a diff of its current policy; with
//! `--apply`, the change goes through `policy set` (hot reload) after the diff.

use std::net::IpAddr;

use openshell_gateway_api::proto::{Request, Response};
use openshell_policy::advise::{Advice, Denial, Outcome, advise};
use serde_json::{Value, json};

use crate::output::Output;
use crate::sandbox_cmd::{SandboxCmdError, call, fail, write_logs};

/// The source name a revision applied by `--apply` gets.
const ADVISED: &str = "policy advise";

pub fn policy_advise(out: &Output, sandbox: &str, apply: bool) -> Result<u8, SandboxCmdError> {
    let Response::Policies { revisions } = call(&Request::PolicyGet { name: sandbox.to_owned(), all: false })? else {
        return Err(fail("unexpected answer"));
    };
    let current = revisions.last().ok_or_else(|| fail(format!("sandbox `{sandbox}` has no policy")))?;
    let mut log = Vec::new();
    write_logs(sandbox, false, true, &mut log)?;
    let (denials, dns) = denials(&String::from_utf8_lossy(&log));
    let file = format!("{sandbox}'s policy (revision {})", current.revision);
    let advice = advise(&file, &current.text, &denials).map_err(fail)?;
    let diff = similar::TextDiff::from_lines(&current.text, &advice.text)
        .unified_diff()
        .header(&format!("{sandbox} (revision {})", current.revision), &format!("{sandbox} (advised)"))
        .to_string();
    if out.json() {
        let applied = if apply && advice.changes() { Some(set(sandbox, &advice)?) } else { None };
        out.print_json(&json!({
            "sandbox": sandbox,
            "revision": current.revision,
            "changes": advice.changes(),
            "diff": diff,
            "policy": advice.text,
            "denials": advice.denials.iter().map(|(d, o)| json!({"request": d.describe(), "outcome": outcome(o)})).collect::<Vec<_>>(),
            "dns_refusals": dns,
            "applied": applied,
        }));
        return Ok(0);
    }
    report(out, &advice, &dns);
    if !advice.changes() {
        out.line("No change to propose.");
        return Ok(0);
    }
    out.line("");
    out.line(diff.trim_end());
    if apply {
        out.line("");
        out.info(&set(sandbox, &advice)?);
    } else {
        out.line("");
        out.line(&format!("Apply it with: openshell policy advise {sandbox} --apply"));
    }
    Ok(0)
}

/// Applies the advised text as the sandbox's new policy; the gateway's answer.
fn set(sandbox: &str, advice: &Advice) -> Result<String, SandboxCmdError> {
    let request = Request::PolicySet {
        name: sandbox.to_owned(),
        policy_name: ADVISED.into(),
        policy: advice.text.clone(),
        wait: true,
    };
    match call(&request)? {
        Response::Done { message } => Ok(message),
        _ => Err(fail("unexpected answer")),
    }
}

/// Each denial and what became of it, one line each, then the DNS refusals.
fn report(out: &Output, advice: &Advice, dns: &[String]) {
    if advice.denials.is_empty() {
        out.line("No denied request in the audit log.");
    }
    for (denial, o) in &advice.denials {
        out.line(&format!("{:<16} {}", outcome(o), denial.describe()));
    }
    if !dns.is_empty() {
        out.line(&format!(
            "DNS refused {} (a name is answered once a network policy names it for the binary that connects)",
            dns.join(", ")
        ));
    }
}

fn outcome(o: &Outcome) -> String {
    match o {
        Outcome::Proposed => "proposed".into(),
        Outcome::AllowedNow => "allowed now".into(),
        Outcome::NotProposed(why) => format!("not proposed: {why}"),
    }
}

/// The blocked requests of an audit log (OCSF lines), and the names its DNS
/// responder refused.
fn denials(log: &str) -> (Vec<Denial>, Vec<String>) {
    let mut denials = Vec::new();
    let mut dns = Vec::new();
    for event in log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        if event["disposition"] != "blocked" {
            continue;
        }
        let text = |key: &str| event[key].as_str().map(str::to_owned);
        let Some(host) = text("dst_hostname") else { continue };
        if event["class_uid"] == 4003 {
            if !dns.contains(&host) {
                dns.push(host);
            }
            continue;
        }
        let Some(port) = event["dst_port"].as_u64().and_then(|p| u16::try_from(p).ok()) else { continue };
        let http = text("http_method").zip(text("http_path"));
        let ip = text("dst_ip").and_then(|ip| ip.parse::<IpAddr>().ok());
        let raw_tcp = event["raw_tcp"] == true;
        denials.push(Denial { host, port, binary: text("actor_process"), ip, http, raw_tcp });
    }
    (denials, dns)
}

#[cfg(test)]
mod tests {
    #[test]
    fn blocked_lines_become_denials_and_dns_refusals_names() {
        let log = r#"{"class_uid":4001,"disposition":"allowed","dst_hostname":"ok.test","dst_port":443,"actor_process":"/usr/bin/curl"}
{"class_uid":4001,"disposition":"blocked","dst_hostname":"a.test","dst_port":443,"actor_process":"/usr/bin/curl","dst_ip":"10.0.0.5"}
{"class_uid":4002,"disposition":"blocked","dst_hostname":"b.test","dst_port":443,"actor_process":"/usr/bin/curl","http_method":"POST","http_path":"/x"}
{"class_uid":4003,"disposition":"blocked","dst_hostname":"c.test","dst_port":53}
not json
"#;
        let (denials, dns) = super::denials(log);
        assert_eq!(denials.len(), 2);
        assert_eq!(denials[0].ip, Some("10.0.0.5".parse().expect("ip")));
        assert_eq!(denials[1].http, Some(("POST".into(), "/x".into())));
        assert_eq!(dns, ["c.test"]);
    }
}
