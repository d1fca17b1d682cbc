//! The step graph (petgraph): forward edges from `needs`, the parallel "waves" of the forward run, and the
//! rollback order derived from each step's effect (the reverse of the forward order over steps that change
//! state). Also renders the graph as Graphviz dot or Mermaid, forward edges solid, rollback edges dashed.

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::kind::Kinds;
use crate::plan::{Plan, Step, StepId};
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

/// The step graph of a valid plan: the one structure the preview, the scheduler, the rollback, `recover` and
/// `stop` all read, so the order `zdd plan` shows is the order a run follows.
#[derive(Debug, Clone, Default)]
pub struct StepGraph {
    /// An edge `a -> b` means `b` needs `a` (a runs first). Node `i` is step `i`.
    pub graph: DiGraph<StepId, ()>,
    /// Groups of steps that can run at the same time, in order: every step's needs are in earlier waves.
    pub waves: Vec<Vec<StepId>>,
    /// Groups of steps whose undos can run at the same time, in order: a step is undone only after every step
    /// that needs it (directly or not) has been undone, so an undo never pulls something from under another.
    pub undo_waves: Vec<Vec<StepId>>,
}

impl StepGraph {
    /// Build from a validated plan (whose `needs` are known to be acyclic).
    pub fn build(plan: &Plan) -> Self {
        Self::build_from_steps(&plan.steps)
    }

    /// Build from steps whose `needs` are resolved (what validation does once).
    pub fn build_from_steps(steps: &[Step]) -> Self {
        Self::from_needs(&steps.iter().map(|s| s.needs.clone()).collect::<Vec<_>>())
    }

    /// Build from each step's needs (`needs[i]` are the steps step `i` needs). Needs that name no step, and
    /// cycles (which validation rejects), are ignored rather than looped on.
    pub fn from_needs(needs: &[Vec<StepId>]) -> Self {
        let n = needs.len();
        let mut graph = DiGraph::with_capacity(n, needs.iter().map(Vec::len).sum());
        for i in 0..n {
            graph.add_node(StepId(i));
        }
        for (i, step_needs) in needs.iter().enumerate() {
            for need in step_needs.iter().filter(|need| need.0 < n && need.0 != i) {
                if graph.find_edge(NodeIndex::new(need.0), NodeIndex::new(i)).is_none() {
                    graph.add_edge(NodeIndex::new(need.0), NodeIndex::new(i), ());
                }
            }
        }
        // A step's wave is one more than the latest wave among its needs; its undo wave one more than the
        // latest undo wave among its dependents. Declaration order settles ties within a wave.
        let waves = group(&depths(&graph, Direction::Incoming));
        let undo_waves = group(&depths(&graph, Direction::Outgoing));
        Self { graph, waves, undo_waves }
    }

    /// Every step in forward order (wave by wave, declaration order within a wave).
    pub fn forward_order(&self) -> Vec<StepId> {
        self.waves.iter().flatten().copied().collect()
    }

    /// The steps `id` needs, in declaration order.
    pub fn needs(&self, id: StepId) -> Vec<StepId> {
        self.neighbours(id, Direction::Incoming)
    }

    /// The steps that need `id`, in declaration order.
    pub fn dependents(&self, id: StepId) -> Vec<StepId> {
        self.neighbours(id, Direction::Outgoing)
    }

    /// Each step's needs, indexed by step (what the scheduler consumes).
    pub fn needs_lists(&self) -> Vec<Vec<StepId>> {
        (0..self.graph.node_count()).map(|i| self.needs(StepId(i))).collect()
    }

    fn neighbours(&self, id: StepId, dir: Direction) -> Vec<StepId> {
        let mut out: Vec<StepId> =
            self.graph.neighbors_directed(NodeIndex::new(id.0), dir).map(|ix| self.graph[ix]).collect();
        out.sort_unstable();
        out
    }

    /// The undo waves restricted to the steps `include` picks (those that recorded undo facts), empty waves
    /// dropped. Steps left out still order the others: if `c` needs `b` needs `a` and only `a` and `c` are
    /// undone, `c` is undone first.
    pub fn undo_order(&self, include: impl Fn(StepId) -> bool) -> Vec<Vec<StepId>> {
        self.undo_waves
            .iter()
            .map(|wave| wave.iter().copied().filter(|id| include(*id)).collect::<Vec<_>>())
            .filter(|wave| !wave.is_empty())
            .collect()
    }

    /// The derived rollback of every step, in undo order, each with what happens to it.
    pub fn rollback(&self, plan: &Plan, kinds: &Kinds) -> Vec<RollbackEntry> {
        self.undo_waves
            .iter()
            .enumerate()
            .flat_map(|(wave, ids)| ids.iter().map(move |id| (wave, *id)))
            .map(|(wave, id)| {
                let step = plan.step(id);
                let effect = kinds.get(&step.kind).map_or(Effect::ReadOnly, |k| k.effect(step));
                RollbackEntry { step: id, effect, wave }
            })
            .collect()
    }
}

/// For every node, the length of the longest path to it walking edges against `dir` (forward waves:
/// `Incoming`, from the steps it needs; undo waves: `Outgoing`, from the steps that need it). Iterative, so a
/// 1,000-step chain does not recurse 1,000 deep.
fn depths(graph: &DiGraph<StepId, ()>, dir: Direction) -> Vec<usize> {
    let n = graph.node_count();
    let mut depth = vec![0usize; n];
    let mut pending: Vec<usize> = (0..n).map(|i| graph.neighbors_directed(NodeIndex::new(i), dir).count()).collect();
    let mut ready: std::collections::VecDeque<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
    while let Some(i) = ready.pop_front() {
        for next in graph.neighbors_directed(NodeIndex::new(i), dir.opposite()) {
            let j = next.index();
            depth[j] = depth[j].max(depth[i] + 1);
            pending[j] -= 1;
            if pending[j] == 0 {
                ready.push_back(j);
            }
        }
    }
    // A cycle (rejected by validation) leaves its members at the depth they reached: an order, if a
    // meaningless one, rather than a hang.
    depth
}

/// Group node indices by depth, in declaration order within a group.
fn group(depths: &[usize]) -> Vec<Vec<StepId>> {
    let mut waves: Vec<Vec<StepId>> = vec![Vec::new(); depths.iter().max().map_or(0, |d| d + 1)];
    for (i, &d) in depths.iter().enumerate() {
        waves[d].push(StepId(i));
    }
    waves
}

/// One step in the derived rollback order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollbackEntry {
    pub step: StepId,
    /// `Reversible`: undone; `ForwardOnly`: listed but not undone; `ReadOnly`: nothing to undo.
    pub effect: Effect,
    /// The undo wave (0-based): entries of one wave are undone at the same time.
    pub wave: usize,
}

/// Graphviz dot: forward edges solid, the rollback chain dashed and red, nodes shaped by effect.
pub fn to_dot(plan: &Plan, kinds: &Kinds) -> String {
    let graph = &plan.graph;
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
pub fn to_mermaid(plan: &Plan, kinds: &Kinds) -> String {
    let graph = &plan.graph;
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

    fn ids(waves: &[Vec<StepId>]) -> Vec<Vec<usize>> {
        waves.iter().map(|w| w.iter().map(|id| id.0).collect()).collect()
    }

    fn graph(needs: &[&[usize]]) -> StepGraph {
        StepGraph::from_needs(&needs.iter().map(|n| n.iter().map(|&i| StepId(i)).collect()).collect::<Vec<_>>())
    }

    #[test]
    fn a_diamond_runs_in_three_waves_and_is_undone_in_the_mirror_order() {
        // 1 and 2 need 0; 3 needs 1 and 2; 4 needs nothing.
        let g = graph(&[&[], &[0], &[0], &[1, 2], &[]]);
        assert_eq!(ids(&g.waves), [vec![0, 4], vec![1, 2], vec![3]]);
        assert_eq!(ids(&g.undo_waves), [vec![3, 4], vec![1, 2], vec![0]]);
        assert_eq!(g.needs(StepId(3)), [StepId(1), StepId(2)]);
        assert_eq!(g.dependents(StepId(0)), [StepId(1), StepId(2)]);
    }

    #[test]
    fn a_step_is_undone_after_everything_that_needs_it_even_through_a_step_left_out() {
        // 2 needs 1 needs 0; 3 needs 0. Only 0, 2 and 3 recorded facts (1 is a read-only check).
        let g = graph(&[&[], &[0], &[1], &[0]]);
        let order = g.undo_order(|id| id.0 != 1);
        assert_eq!(ids(&order), [vec![2, 3], vec![0]]);
        assert!(g.undo_order(|_| false).is_empty());
    }

    #[test]
    fn a_long_chain_does_not_recurse() {
        let needs: Vec<Vec<StepId>> = (0..5000).map(|i| if i == 0 { vec![] } else { vec![StepId(i - 1)] }).collect();
        let g = StepGraph::from_needs(&needs);
        assert_eq!(g.waves.len(), 5000);
        assert_eq!(g.undo_waves.first().map(|w| w[0].0), Some(4999));
    }

    #[test]
    fn no_cycles_in_a_dag() {
        assert!(find_cycles(3, &[(1, 0), (2, 0), (2, 1)]).is_empty());
    }
}
