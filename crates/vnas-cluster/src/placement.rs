//! Placement: which node should host a vserver. A pure function of the
//! nodes and their loads, so every node computes the same answer and only
//! that node acts (the epoch compare-and-swap settles any race).

use std::collections::HashMap;

/// A node as placement sees it.
pub struct Candidate<'a> {
    pub name: &'a str,
    pub up: bool,
    pub drained: bool,
}

/// The least loaded node that is up, not drained and not `exclude`; ties go
/// to the first name.
pub fn place<'a>(
    nodes: &[Candidate<'a>],
    loads: &HashMap<&str, usize>,
    exclude: Option<&str>,
) -> Option<&'a str> {
    place_allowed(nodes, loads, exclude, &[])
}

/// The same among `allowed` (empty: any).
pub fn place_allowed<'a>(
    nodes: &[Candidate<'a>],
    loads: &HashMap<&str, usize>,
    exclude: Option<&str>,
    allowed: &[String],
) -> Option<&'a str> {
    nodes
        .iter()
        .filter(|n| n.up && !n.drained && Some(n.name) != exclude)
        .filter(|n| allowed.is_empty() || allowed.iter().any(|a| a == n.name))
        .min_by_key(|n| (loads.get(n.name).copied().unwrap_or(0), n.name))
        .map(|n| n.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(nodes: &[(&'static str, bool, bool, usize)], exclude: Option<&str>, expected: Option<&str>) {
        let candidates: Vec<_> = nodes
            .iter()
            .map(|(name, up, drained, _)| Candidate { name, up: *up, drained: *drained })
            .collect();
        let loads: HashMap<&str, usize> = nodes.iter().map(|(name, _, _, load)| (*name, *load)).collect();
        assert_eq!(place(&candidates, &loads, exclude), expected);
        // Reference model: sort every eligible node by (load, name).
        let mut eligible: Vec<_> =
            nodes.iter().filter(|(n, up, drained, _)| *up && !*drained && Some(*n) != exclude).collect();
        eligible.sort_by_key(|(name, _, _, load)| (*load, *name));
        assert_eq!(eligible.first().map(|(n, ..)| *n), expected);
    }

    #[test]
    fn least_loaded_live_undrained() {
        check(&[("n1", true, false, 3), ("n2", true, false, 1), ("n3", true, false, 1)], None, Some("n2"));
        check(&[("n1", true, false, 0), ("n2", false, false, 0)], Some("n1"), None);
        check(&[("n1", true, true, 0), ("n2", true, false, 9)], None, Some("n2"));
        check(&[("n1", true, false, 0), ("n2", true, false, 9)], Some("n1"), Some("n2"));
        check(&[], None, None);
    }
}
