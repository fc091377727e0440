//! The effects of Debian maintainer scripts that matter in an image, produced
//! without running the scripts: `update-alternatives --install` links and the
//! `/etc/shells` that debianutils' postinst (`update-shells`) writes.

use std::collections::BTreeMap;

use openshell_oci::{ContentRef, Entry, EntryKind, Origin, Tree};

use crate::build::BuildError;

/// One `update-alternatives --install` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    pub package: String,
    pub link: String,
    pub name: String,
    pub path: String,
    pub priority: i64,
    /// (link, name, path) of each `--slave`.
    pub slaves: Vec<(String, String, String)>,
}

/// Finds `update-alternatives --install` calls in a maintainer script (line
/// continuations joined; calls with shell variables in their arguments ignored).
pub fn parse_alternatives(package: &str, script: &str) -> Vec<Alternative> {
    let joined = script.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(start) = words.windows(2).position(|w| w[0] == "update-alternatives" && w[1] == "--install") else {
            continue;
        };
        let args = &words[start + 2..];
        if args.len() < 4 || args[..4].iter().any(|a| a.contains('$')) {
            continue;
        }
        let Ok(priority) = args[3].parse::<i64>() else { continue };
        let mut slaves = Vec::new();
        let mut rest = &args[4..];
        while rest.len() >= 4 && rest[0] == "--slave" {
            if !rest[1..4].iter().any(|a| a.contains('$')) {
                slaves.push((rest[1].to_owned(), rest[2].to_owned(), rest[3].to_owned()));
            }
            rest = &rest[4..];
        }
        out.push(Alternative {
            package: package.to_owned(),
            link: args[0].to_owned(),
            name: args[1].to_owned(),
            path: args[2].to_owned(),
            priority,
            slaves,
        });
    }
    out
}

fn exists(tree: &Tree, abs: &str) -> bool {
    tree.get(abs.trim_start_matches('/')).is_some()
}

fn put(tree: &mut Tree, path: &str, kind: EntryKind) -> Result<(), BuildError> {
    let path = path.trim_start_matches('/');
    tree.set(path, Entry { kind, uid: 0, gid: 0, origin: Origin::new("generated") })?;
    Ok(())
}

/// Applies the alternatives as update-alternatives would in auto mode: per name, the
/// highest priority whose path exists wins (ties: the earlier package by name); the
/// link points to `/etc/alternatives/NAME`, which points to the chosen path; slaves
/// whose targets are missing are skipped; `/var/lib/dpkg/alternatives/NAME` records it.
pub fn apply_alternatives(tree: &mut Tree, alternatives: &[Alternative]) -> Result<(), BuildError> {
    let mut by_name: BTreeMap<&str, Vec<&Alternative>> = BTreeMap::new();
    for a in alternatives.iter().filter(|a| exists(tree, &a.path)) {
        by_name.entry(&a.name).or_default().push(a);
    }
    for (name, mut candidates) in by_name {
        candidates.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.package.cmp(&b.package)));
        let best = candidates[0];
        put(tree, &best.link, EntryKind::Symlink { target: format!("/etc/alternatives/{name}") })?;
        put(tree, &format!("etc/alternatives/{name}"), EntryKind::Symlink { target: best.path.clone() })?;
        let mut status = format!("auto\n{}\n", best.link);
        for (link, sname, path) in &best.slaves {
            status.push_str(&format!("{sname}\n{link}\n"));
            if exists(tree, path) {
                put(tree, link, EntryKind::Symlink { target: format!("/etc/alternatives/{sname}") })?;
                put(tree, &format!("etc/alternatives/{sname}"), EntryKind::Symlink { target: path.clone() })?;
            }
        }
        status.push('\n');
        for c in &candidates {
            status.push_str(&format!("{}\n{}\n", c.path, c.priority));
            for (_, _, path) in &c.slaves {
                status.push_str(&format!("{path}\n"));
            }
        }
        status.push('\n');
        put(
            tree,
            &format!("var/lib/dpkg/alternatives/{name}"),
            EntryKind::File { mode: 0o644, content: ContentRef::bytes(status.into_bytes()) },
        )?;
    }
    Ok(())
}

/// `/etc/shells` as debianutils' `update-shells` writes it: the template plus every
/// shell listed in `/usr/share/debianutils/shells.d/*` that exists, in order, with
/// the `/usr`-less aliases of merged-/usr systems.
pub fn shells(tree: &mut Tree, read: &dyn Fn(&Tree, &str) -> Option<Vec<u8>>) -> Result<(), BuildError> {
    let Some(template) = read(tree, "usr/share/debianutils/shells") else { return Ok(()) };
    let mut lines: Vec<String> = String::from_utf8_lossy(&template).lines().map(str::to_owned).collect();
    let extra: Vec<String> = tree
        .iter()
        .filter(|(p, e, _)| {
            p.starts_with("usr/share/debianutils/shells.d/") && matches!(e.kind, EntryKind::File { .. })
        })
        .map(|(p, _, _)| p.to_owned())
        .collect();
    for file in extra {
        for shell in read(tree, &file).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default().lines() {
            let shell = shell.trim();
            if shell.is_empty() || shell.starts_with('#') || !exists(tree, shell) {
                continue;
            }
            let mut add = vec![shell.to_owned()];
            if let Some(short) = shell.strip_prefix("/usr")
                && tree
                    .get(short.trim_start_matches('/').split('/').next().unwrap_or(""))
                    .is_some_and(|e| matches!(e.kind, EntryKind::Symlink { .. }))
            {
                add.push(short.to_owned());
            }
            for s in add {
                if !lines.contains(&s) {
                    lines.push(s);
                }
            }
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    put(tree, "etc/shells", EntryKind::File { mode: 0o644, content: ContentRef::bytes(text.into_bytes()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_install_calls_with_slaves() {
        let script = "set -e\nif [ x ]; then\n        update-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \\\n            --slave /usr/bin/nawk nawk /usr/bin/mawk\nfi\nupdate-alternatives --install /usr/bin/x x $FOO 1\n";
        let a = parse_alternatives("mawk", script);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].link, "/usr/bin/awk");
        assert_eq!(a[0].priority, 5);
        assert_eq!(a[0].slaves, vec![("/usr/bin/nawk".into(), "nawk".into(), "/usr/bin/mawk".into())]);
    }

    #[test]
    fn highest_priority_wins_and_missing_targets_are_skipped() {
        let origin = Origin::new("debian");
        let mut tree = Tree::new(openshell_oci::OnConflict::Error);
        for p in ["usr/bin/mawk", "usr/bin/gawk"] {
            tree.insert(
                p,
                Entry {
                    kind: EntryKind::File { mode: 0o755, content: ContentRef::bytes(b"x".to_vec()) },
                    uid: 0,
                    gid: 0,
                    origin: origin.clone(),
                },
            )
            .expect("insert");
        }
        let alts = [
            Alternative {
                package: "mawk".into(),
                link: "/usr/bin/awk".into(),
                name: "awk".into(),
                path: "/usr/bin/mawk".into(),
                priority: 5,
                slaves: vec![
                    ("/usr/bin/nawk".into(), "nawk".into(), "/usr/bin/mawk".into()),
                    ("/usr/share/man/man1/awk.1.gz".into(), "awk.1.gz".into(), "/usr/share/man/man1/mawk.1.gz".into()),
                ],
            },
            Alternative {
                package: "gawk".into(),
                link: "/usr/bin/awk".into(),
                name: "awk".into(),
                path: "/usr/bin/gawk".into(),
                priority: 10,
                slaves: vec![],
            },
            Alternative {
                package: "nope".into(),
                link: "/usr/bin/vi".into(),
                name: "vi".into(),
                path: "/usr/bin/missing".into(),
                priority: 100,
                slaves: vec![],
            },
        ];
        apply_alternatives(&mut tree, &alts).expect("apply");
        let link = |p: &str| match tree.get(p).map(|e| e.kind.clone()) {
            Some(EntryKind::Symlink { target }) => target,
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(link("usr/bin/awk"), "/etc/alternatives/awk");
        assert_eq!(link("etc/alternatives/awk"), "/usr/bin/gawk");
        assert!(tree.get("usr/bin/vi").is_none());
        assert!(tree.get("var/lib/dpkg/alternatives/awk").is_some());
    }
}
