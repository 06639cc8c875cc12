//! The static check that keeps every script Cluster-safe: a script may
//! name a key only through `KEYS` (Redis Cluster routes a script by its
//! declared keys; a key built inside the script may live on another node).

/// Every script of every store.
fn all_scripts() -> Vec<(String, &'static str)> {
    let mut all = Vec::new();
    #[cfg(feature = "sessions")]
    all.extend(
        crate::session::SCRIPTS
            .iter()
            .map(|(name, source)| (format!("session {name}"), *source)),
    );
    #[cfg(feature = "refresh")]
    all.extend(
        crate::refresh::SCRIPTS
            .iter()
            .map(|(name, source)| (format!("refresh {name}"), *source)),
    );
    #[cfg(feature = "revocation")]
    all.extend(
        crate::revocation::SCRIPTS
            .iter()
            .map(|(name, source)| (format!("revocation {name}"), *source)),
    );
    all
}

/// The first argument of every `redis.call(…)`/`redis.pcall(…)` after the
/// command name, with the command.
fn calls(source: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for opener in ["redis.call(", "redis.pcall("] {
        let mut rest = source;
        while let Some(at) = rest.find(opener) {
            rest = &rest[at + opener.len()..];
            let close = matching_paren(rest);
            let inside = &rest[..close];
            let mut args = split_args(inside).into_iter();
            let command = args.next().unwrap_or_default();
            let key = args.next().unwrap_or_default();
            found.push((command.trim().to_owned(), key.trim().to_owned()));
        }
    }
    found
}

fn matching_paren(text: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return i,
            ')' => depth -= 1,
            _ => {}
        }
    }
    text.len()
}

fn split_args(text: &str) -> Vec<String> {
    let (mut args, mut current, mut depth) = (Vec::new(), String::new(), 0usize);
    for c in text.chars() {
        match c {
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                args.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    args.push(current);
    args
}

/// Commands whose first argument is not a key (`PUBLISH` names a channel,
/// which every node of a Cluster serves).
const NO_KEY_COMMANDS: &[&str] = &["'PUBLISH'"];

/// The names the scripts give to parameters of their local functions that
/// hold keys. Any other parameter is not a key.
const KEY_PARAMETERS: &[&str] = &["key", "idx", "gen", "old", "target"];

/// Whether `key` (a Lua expression) is a key the script was given: an
/// element of `KEYS`, or a key parameter of a local function (whose call
/// sites are checked to pass `KEYS` elements), or a loop variable over a
/// list of those.
fn from_keys(key: &str, parameters: &[String]) -> bool {
    key.starts_with("KEYS[") || parameters.iter().any(|p| p == key)
}

/// The local functions of a script, with the positions of their key
/// parameters.
fn functions(source: &str) -> Vec<(String, Vec<usize>)> {
    let mut found = Vec::new();
    for line in source.lines() {
        if let Some(rest) = line.trim().strip_prefix("local function ")
            && let Some((name, params)) = rest.split_once('(')
        {
            let params = params.split(')').next().unwrap_or_default();
            let positions = params
                .split(',')
                .enumerate()
                .filter(|(_, p)| KEY_PARAMETERS.contains(&p.trim()))
                .map(|(i, _)| i)
                .collect();
            found.push((name.trim().to_owned(), positions));
        }
    }
    found
}

/// The expressions the script may name a key by, besides `KEYS[…]`.
fn key_parameters(source: &str) -> Vec<String> {
    let mut parameters: Vec<String> = KEY_PARAMETERS.iter().map(|p| (*p).to_owned()).collect();
    for line in source.lines() {
        // `for _, k in ipairs({KEYS[2], KEYS[3]})`: the loop variable holds
        // declared keys when the list holds only declared keys.
        if let Some(rest) = line.trim().strip_prefix("for _, ")
            && let Some((variable, list)) = rest.split_once(" in ipairs({")
        {
            let list = list.split("})").next().unwrap_or_default();
            if split_args(list).iter().all(|item| from_keys(item.trim(), &parameters)) {
                parameters.push(variable.trim().to_owned());
            }
        }
    }
    parameters
}

/// Every call of a local function passes keys from `KEYS` where it takes
/// keys.
fn check_function_calls(name: &str, source: &str, parameters: &[String]) {
    for (function, positions) in functions(source) {
        let opener = format!("{function}(");
        for line in source.lines() {
            if line.trim_start().starts_with("local function") {
                continue;
            }
            let mut rest = line;
            while let Some(at) = rest.find(&opener) {
                let before = &rest[..at];
                rest = &rest[at + opener.len()..];
                if before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.') {
                    continue;
                }
                let args = split_args(&rest[..matching_paren(rest)]);
                for &position in &positions {
                    let arg = args.get(position).map(|a| a.trim()).unwrap_or_default();
                    assert!(
                        from_keys(arg, parameters),
                        "script {name}: {function}() takes a key at position {position} and gets `{arg}`, not a key from KEYS"
                    );
                }
            }
        }
    }
}

#[test]
fn every_key_a_script_touches_comes_from_keys() {
    let scripts = all_scripts();
    assert!(
        scripts.len() >= 14,
        "every store's scripts are checked: {}",
        scripts.len()
    );
    for (name, source) in scripts {
        let parameters = key_parameters(source);
        let calls = calls(source);
        assert!(
            !calls.is_empty(),
            "{name}: no redis.call found; the check would prove nothing"
        );
        for (command, key) in calls {
            // A command that names no key: Cluster may run it anywhere.
            if NO_KEY_COMMANDS.contains(&command.as_str()) {
                continue;
            }
            assert!(
                from_keys(&key, &parameters),
                "script {name}: {command} touches `{key}`, a key not taken from KEYS (CROSSSLOT on a Cluster)"
            );
        }
        check_function_calls(&name, source, &parameters);
    }
}

#[test]
fn the_check_catches_a_key_built_inside_a_script() {
    let bad = "local moved = redis.call('HGET', KEYS[1], 'm')\nreturn redis.call('HGETALL', ARGV[1] .. 's:' .. moved)";
    let parameters = key_parameters(bad);
    let offending: Vec<_> = calls(bad)
        .into_iter()
        .filter(|(_, key)| !from_keys(key, &parameters))
        .collect();
    assert_eq!(offending.len(), 1, "{offending:?}");
    assert_eq!(offending[0].1, "ARGV[1] .. 's:' .. moved");
}

#[test]
#[should_panic(expected = "takes a key at position 0 and gets `ARGV[2]`")]
fn the_check_catches_a_function_fed_a_key_built_from_arguments() {
    let bad = "local function live(key)
  return redis.call('EXISTS', key)
end
return live(ARGV[2])";
    check_function_calls("bad", bad, &key_parameters(bad));
}
