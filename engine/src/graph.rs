//! The step graph (petgraph): forward edges from `needs`, the parallel "waves" of the forward run, and the
//! rollback order derived from each step's effect (the reverse of the forward order over steps that change
//! state). Also renders the graph as Graphviz dot or Mermaid, forward edges solid, rollback edges dashed.

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::kind::Kinds;
use crate::plan::{Plan, StepId};
use crate::schema::Effect;

/// Every dependency cycle among `n` nodes with edges `from needs to`, each as a path that starts and ends at
/// the same node (`[a, b, c, a]`), starting from its lowest-numbered node. Cycles are listed by that node.
pub fn find_cycles(n: usize, needs: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut g: DiGraph<usize, ()> = DiGraph::with_capacity(n, needs.len());
    let nodes: Vec<NodeIndex> = (0..n).map(|i| g.add_node(i)).collect();
    for &(from, to) in needs {
        g.add_edge(nodes[from], nodes[to], ());
    }
    let mut cycles = Vec::new();
    for scc in tarjan_scc(&g) {
        let members: Vec<usize> = scc.iter().map(|ix| g[*ix]).collect();
        let Some(&start) = members.iter().min() else {
            continue;
        };
        if members.len() == 1 && !needs.contains(&(start, start)) {
            continue;
        }
        cycles.push(path_back_to(start, &members, needs));
    }
    cycles.sort_by_key(|c| c[0]);
    cycles
}

/// A shortest path from `start` back to itself inside one strongly connected component (breadth first).
fn path_back_to(start: usize, members: &[usize], needs: &[(usize, usize)]) -> Vec<usize> {
    let mut prev: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        let mut next: Vec<usize> =
            needs.iter().filter(|(f, t)| *f == node && members.contains(t)).map(|(_, t)| *t).collect();
        next.sort_unstable();
        for to in next {
            if to == start {
                // Walk back from `node` to `start`, then read it forwards and close the loop.
                let mut back = vec![node];
                while let Some(&p) = back.last().and_then(|at| prev.get(at)) {
                    back.push(p);
                }
                back.reverse();
                back.push(start);
                return back;
            }
            if to != start && !prev.contains_key(&to) {
                prev.insert(to, node);
                queue.push_back(to);
            }
        }
    }
    vec![start, start]
}

/// The step graph of a valid plan.
#[derive(Debug, Clone)]
pub struct StepGraph {
    /// An edge `a -> b` means `b` needs `a` (a runs first).
    pub graph: DiGraph<StepId, ()>,
    /// Groups of steps that can run at the same time, in order: every step's needs are in earlier waves.
    pub waves: Vec<Vec<StepId>>,
}

impl StepGraph {
    /// Build from a validated plan (whose `needs` are known to be acyclic).
    pub fn build(plan: &Plan) -> Self {
        fn wave(plan: &Plan, id: usize, memo: &mut [Option<usize>], depth: usize) -> usize {
            if let Some(w) = memo[id] {
                return w;
            }
            // Validation rejects cycles; the depth bound only keeps a malformed plan from recursing forever.
            if depth > plan.steps.len() {
                return 0;
            }
            let w = plan.steps[id].needs.iter().map(|n| wave(plan, n.0, memo, depth + 1) + 1).max().unwrap_or(0);
            memo[id] = Some(w);
            w
        }
        let mut graph = DiGraph::with_capacity(plan.steps.len(), 0);
        for step in &plan.steps {
            graph.add_node(step.id);
        }
        for step in &plan.steps {
            for need in &step.needs {
                graph.add_edge(NodeIndex::new(need.0), NodeIndex::new(step.id.0), ());
            }
        }
        // A step's wave is one more than the latest wave among its needs; declaration order settles ties.
        let mut wave_of: Vec<Option<usize>> = vec![None; plan.steps.len()];
        let mut waves: Vec<Vec<StepId>> = Vec::new();
        for step in &plan.steps {
            let w = wave(plan, step.id.0, &mut wave_of, 0);
            if waves.len() <= w {
                waves.resize(w + 1, Vec::new());
            }
            waves[w].push(step.id);
        }
        Self { graph, waves }
    }

    /// Every step in forward order (wave by wave, declaration order within a wave).
    pub fn forward_order(&self) -> Vec<StepId> {
        self.waves.iter().flatten().copied().collect()
    }

    /// The derived rollback: the forward order reversed, each step with what happens to it.
    pub fn rollback(&self, plan: &Plan, kinds: &Kinds) -> Vec<RollbackEntry> {
        self.forward_order()
            .into_iter()
            .rev()
            .map(|id| {
                let step = plan.step(id);
                let effect = kinds.get(&step.kind).map_or(Effect::ReadOnly, |k| k.effect(step));
                RollbackEntry { step: id, effect }
            })
            .collect()
    }
}

/// One step in the derived rollback order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollbackEntry {
    pub step: StepId,
    /// `Reversible`: undone; `ForwardOnly`: listed but not undone; `ReadOnly`: nothing to undo.
    pub effect: Effect,
}

/// Graphviz dot: forward edges solid, the rollback chain dashed and red, nodes shaped by effect.
pub fn to_dot(plan: &Plan, graph: &StepGraph, kinds: &Kinds) -> String {
    let mut out = format!("digraph {} {{\n", dot_id(&plan.name));
    out.push_str("  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    let rollback = graph.rollback(plan, kinds);
    for id in graph.forward_order() {
        let step = plan.step(id);
        let effect = rollback.iter().find(|e| e.step == id).map_or(Effect::ReadOnly, |e| e.effect);
        let (shape, note) = effect_style(effect);
        out.push_str(&format!(
            "  {} [shape={shape}, label={}];\n",
            dot_id(&step.name),
            dot_id(&format!("{}\\n{} ({note})", step.name, step.kind))
        ));
    }
    for id in graph.forward_order() {
        let step = plan.step(id);
        for need in &step.needs {
            out.push_str(&format!("  {} -> {};\n", dot_id(&plan.step(*need).name), dot_id(&step.name)));
        }
    }
    let undone: Vec<&RollbackEntry> = rollback.iter().filter(|e| e.effect == Effect::Reversible).collect();
    for (i, pair) in undone.windows(2).enumerate() {
        out.push_str(&format!(
            "  {} -> {} [style=dashed, color=red, fontcolor=red, constraint=false, label=\"undo {}\"];\n",
            dot_id(&plan.step(pair[0].step).name),
            dot_id(&plan.step(pair[1].step).name),
            i + 1
        ));
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart: forward edges `-->`, the rollback chain `-.->` styled red.
pub fn to_mermaid(plan: &Plan, graph: &StepGraph, kinds: &Kinds) -> String {
    let mut out = String::from("flowchart LR\n");
    let rollback = graph.rollback(plan, kinds);
    let ids: Vec<String> = plan.steps.iter().map(|s| format!("s{}", s.id.0)).collect();
    for id in graph.forward_order() {
        let step = plan.step(id);
        let effect = rollback.iter().find(|e| e.step == id).map_or(Effect::ReadOnly, |e| e.effect);
        let (_, note) = effect_style(effect);
        let label = format!("{}<br/>{} ({note})", step.name, step.kind).replace('"', "#quot;");
        let (open, close) = match effect {
            Effect::ReadOnly => ("([", "])"),
            Effect::ForwardOnly => ("[[", "]]"),
            Effect::Reversible => ("[", "]"),
        };
        out.push_str(&format!("  {}{open}\"{label}\"{close}\n", ids[id.0]));
    }
    let mut edge = 0usize;
    for id in graph.forward_order() {
        for need in &plan.step(id).needs {
            out.push_str(&format!("  {} --> {}\n", ids[need.0], ids[id.0]));
            edge += 1;
        }
    }
    let undone: Vec<&RollbackEntry> = rollback.iter().filter(|e| e.effect == Effect::Reversible).collect();
    let mut dashed = Vec::new();
    for (i, pair) in undone.windows(2).enumerate() {
        out.push_str(&format!("  {} -.->|undo {}| {}\n", ids[pair[0].step.0], i + 1, ids[pair[1].step.0]));
        dashed.push(edge);
        edge += 1;
    }
    if !dashed.is_empty() {
        let list = dashed.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        out.push_str(&format!("  linkStyle {list} stroke:#d33,stroke-dasharray:5 5,color:#d33\n"));
    }
    out
}

fn effect_style(effect: Effect) -> (&'static str, &'static str) {
    match effect {
        Effect::Reversible => ("box", "reversible"),
        Effect::ForwardOnly => ("box, peripheries=2", "forward-only"),
        Effect::ReadOnly => ("ellipse", "read-only"),
    }
}

/// A quoted dot identifier.
fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace("\\\\n", "\\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_paths_back_to_their_first_node() {
        // 0 needs 1, 1 needs 2, 2 needs 0; 3 needs itself; 4 needs 0 (not in a cycle).
        let cycles = find_cycles(5, &[(0, 1), (1, 2), (2, 0), (3, 3), (4, 0)]);
        assert_eq!(cycles, vec![vec![0, 1, 2, 0], vec![3, 3]]);
    }

    #[test]
    fn shortest_cycle_is_reported() {
        let cycles = find_cycles(3, &[(0, 1), (1, 0), (1, 2), (2, 0)]);
        assert_eq!(cycles, vec![vec![0, 1, 0]]);
    }

    #[test]
    fn no_cycles_in_a_dag() {
        assert!(find_cycles(3, &[(1, 0), (2, 0), (2, 1)]).is_empty());
    }
}
