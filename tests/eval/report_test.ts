import assert from "node:assert/strict";
import { accuracyColour, needleHeatmapSvg } from "../../src/eval/report/heatmap.ts";
import { expectedFigureIds, renderHtmlReport } from "../../src/eval/report/html.ts";
import { type EvalReport, runEval } from "../../src/eval/runner.ts";
import { defaultSuite, parseTaskList } from "../../src/eval/suite.ts";
import { CHROMIUM, chromiumMissing, runChromium } from "./_chromium.ts";
import { fakePolicies, RecencyFakeEngine, tinyNeedleTokenizer } from "./_fakeEngine.ts";

const tokenizer = await tinyNeedleTokenizer();

let cached: EvalReport | undefined;
async function report(): Promise<EvalReport> {
  const suite = {
    ...defaultSuite("tiny-needle"),
    tasks: parseTaskList(["needle", "multi_key", "ppl"]),
    lengths: [300, 600],
    depths: [0, 50, 100],
    samples: 1,
  };
  cached ??= await runEval({
    engine: new RecencyFakeEngine(tokenizer),
    policies: fakePolicies(),
    suite,
  });
  return cached;
}

Deno.test("heatmap: colours run red → green, every cell has its number and axes are labelled", () => {
  assert.equal(accuracyColour(0), "rgb(215,48,39)");
  assert.equal(accuracyColour(1), "rgb(26,150,80)");
  assert.equal(accuracyColour(null), "rgb(200,200,200)");
  const rows = [0, 50, 100].flatMap((depth) =>
    [1024, 2048].map((length) => ({
      policy: "p",
      protocol: "aware" as const,
      task: "needle" as const,
      length,
      depth,
      accuracy: depth / 100,
      samples: 4,
      ci_low: 0,
      ci_high: 1,
      kv_ratio: 1,
      decode_tok_s: 10,
    }))
  );
  const svg = needleHeatmapSvg(rows, { title: "a <b> & c", figureId: "heatmap-0" });
  assert.match(svg, /^<svg [^>]*data-figure="heatmap-0"/);
  assert.equal((svg.match(/<rect [^>]*fill="rgb/g) ?? []).length, 6);
  for (const label of ["0.00", "0.50", "1.00", "1k", "2k", "0%", "50%", "100%"]) {
    assert.ok(svg.includes(`>${label}</text>`), label);
  }
  assert.ok(svg.includes("Context length (tokens)") && svg.includes("Needle depth (%)"));
  assert.ok(svg.includes("a &#60;b&#62; &#38; c") && !svg.includes("<b>"));
  assert.ok(svg.includes("<linearGradient"), "colour scale");
});

Deno.test("html report: one heatmap per policy, the scatter, escaped sources, no external resources", async () => {
  const r = await report();
  const html = renderHtmlReport(r);
  assert.deepEqual(expectedFigureIds(r), ["heatmap-0", "heatmap-1", "scatter"]);
  for (const id of expectedFigureIds(r)) {
    assert.equal(html.split(`data-figure="${id}"`).length - 1, 1, id);
  }
  assert.equal((html.match(/<svg /g) ?? []).length, 3);
  assert.ok(html.includes("# keeps &#60;sink &#38; recent&#62; only"), "source HTML-escaped");
  assert.ok(!html.includes("# keeps <sink"), "raw source absent");
  assert.equal((html.match(/class="policy-source"/g) ?? []).length, 2);
  assert.ok(!/(src|href)=["']?(https?:)?\/\//.test(html), "no external resources");
  assert.ok(!/<link\b/.test(html));
  const json = /<script type="application\/json" id="kvpolicy-results">([\s\S]*?)<\/script>/.exec(
    html,
  )!;
  assert.equal(JSON.parse(json[1]).results.length, r.results.length);
  assert.ok(html.includes("Other tasks, per length") && html.includes("multi_key"));
});

Deno.test("html report without the needle task has only the scatter", async () => {
  const r = await report();
  const noNeedle = { ...r, suite: { ...r.suite, tasks: parseTaskList(["ppl"]) } };
  assert.deepEqual(expectedFigureIds(noNeedle), ["scatter"]);
  assert.ok(!renderHtmlReport(noNeedle).includes('data-figure="heatmap'));
});

Deno.test({
  name: "html report renders in headless Chromium with every figure visible",
  ignore: chromiumMissing(),
  async fn() {
    const r = await report();
    const dir = await Deno.makeTempDir({ prefix: "kvpolicy-report-" });
    try {
      const page = `${dir}/report.html`;
      await Deno.writeTextFile(page, renderHtmlReport(r));
      const dom = await runChromium(["--dump-dom"], `file://${page}`, `${dir}/profile-dom`);
      assert.match(dom, /data-figures-rendered="3"/, "the render check ran");
      for (const id of expectedFigureIds(r)) {
        const tag = new RegExp(`<svg[^>]*data-figure="${id}"[^>]*>`).exec(dom);
        assert.ok(tag, `figure ${id} is in the rendered DOM`);
        const size = /data-rendered="(\d+)x(\d+)"/.exec(tag[0]);
        assert.ok(size, `figure ${id} was measured: ${tag[0]}`);
        assert.ok(Number(size[1]) > 100 && Number(size[2]) > 100, `figure ${id} is ${size[0]}`);
      }
      const shot = `${dir}/report.png`;
      await runChromium(
        [`--screenshot=${shot}`, "--window-size=1280,1600"],
        `file://${page}`,
        `${dir}/profile-shot`,
      );
      const png = await Deno.readFile(shot);
      assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
      assert.ok(png.length > 10_000, `screenshot of ${png.length} bytes`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "html report check fails when a figure is missing",
  ignore: CHROMIUM === null,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "kvpolicy-report-" });
    try {
      const r = await report();
      const broken = renderHtmlReport(r).replace(
        /<svg [^>]*data-figure="scatter"[\s\S]*?<\/svg>/,
        "",
      );
      await Deno.writeTextFile(`${dir}/broken.html`, broken);
      const dom = await runChromium(["--dump-dom"], `file://${dir}/broken.html`, `${dir}/profile`);
      assert.match(dom, /data-figures-rendered="2"/);
      assert.ok(!/data-figure="scatter"/.test(dom));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("the hit-rate chart draws one line per policy over the layers", async () => {
  const { hitRateChartSvg, hitRateCurves } = await import("../../src/eval/report/hitRateChart.ts");
  const rows = [
    { policy: "a", task: "hitrate", samples: 1, hit_rate_by_layer: [1, 0.5, 0.25] },
    { policy: "a", task: "hitrate", samples: 3, hit_rate_by_layer: [1, 1, 0.25] },
    { policy: "b", task: "hitrate", samples: 1, hit_rate_by_layer: [0, 0, 1] },
    { policy: "b", task: "needle", samples: 1 },
  ] as unknown as Parameters<typeof hitRateCurves>[0];
  assert.deepEqual(hitRateCurves(rows), [
    { policy: "a", byLayer: [1, 0.875, 0.25] },
    { policy: "b", byLayer: [0, 0, 1] },
  ]);
  const svg = hitRateChartSvg(rows);
  assert.equal((svg.match(/<polyline /g) ?? []).length, 2);
  assert.match(svg, /data-figure="hitrate"/);
});
