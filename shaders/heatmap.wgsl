// The heatmap overlay: a saliency grid drawn over the picture egui has already painted in the
// same rectangle. Each pixel takes the grid's value bilinearly between cell centres (as the
// CPU overlay of src/viz/overlay.rs does), looks it up in the colour map whose stops the host
// passes in, and is blended over the picture at the chosen opacity.

struct Params {
    // The colour map's stops, dark to bright, in 0..1 (the fourth component is unused).
    stops: array<vec4<f32>, 5>,
    // Cells per row and column of the grid.
    side: u32,
    // 0 shows only the picture, 1 only the map.
    opacity: f32,
    // 1 when the target stores linear colour (an sRGB format), so the map's sRGB colours are
    // converted before blending; egui's usual targets store sRGB values as they are.
    linear_target: u32,
    _padding: u32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> cells: array<f32>;

struct Varyings {
    @builtin(position) position: vec4<f32>,
    // 0..1 across the rectangle, y down.
    @location(0) uv: vec2<f32>,
};

// Two triangles over the viewport, which egui sets to the callback's rectangle.
@vertex
fn vs_main(@builtin(vertex_index) index: u32) -> Varyings {
    var corners = array<vec2<f32>, 6>(
        vec2<f32>(0.0, 0.0), vec2<f32>(1.0, 0.0), vec2<f32>(0.0, 1.0),
        vec2<f32>(0.0, 1.0), vec2<f32>(1.0, 0.0), vec2<f32>(1.0, 1.0),
    );
    let uv = corners[index];
    var out: Varyings;
    out.position = vec4<f32>(uv.x * 2.0 - 1.0, 1.0 - uv.y * 2.0, 0.0, 1.0);
    out.uv = uv;
    return out;
}

fn cell(x: u32, y: u32) -> f32 {
    return cells[y * params.side + x];
}

// The grid's value at `uv`, bilinear between cell centres, clamped at the borders.
fn sample(uv: vec2<f32>) -> f32 {
    let last = f32(params.side - 1u);
    let at = clamp(uv * f32(params.side) - vec2<f32>(0.5), vec2<f32>(0.0), vec2<f32>(last));
    let low = vec2<u32>(floor(at));
    let high = min(low + vec2<u32>(1u), vec2<u32>(params.side - 1u));
    let t = at - floor(at);
    let top = mix(cell(low.x, low.y), cell(high.x, low.y), t.x);
    let bottom = mix(cell(low.x, high.y), cell(high.x, high.y), t.x);
    return mix(top, bottom, t.y);
}

// The colour of a value in 0..1, linearly between the stops.
fn colour(value: f32) -> vec3<f32> {
    let scaled = clamp(value, 0.0, 1.0) * 4.0;
    let low = min(u32(floor(scaled)), 3u);
    let t = scaled - f32(low);
    return mix(params.stops[low].rgb, params.stops[low + 1u].rgb, t);
}

@fragment
fn fs_main(in: Varyings) -> @location(0) vec4<f32> {
    var heat = colour(sample(in.uv));
    if params.linear_target == 1u {
        heat = srgb_to_linear(heat);
    }
    // Premultiplied, as egui blends: picture × (1 − opacity) + heat × opacity.
    return vec4<f32>(heat * params.opacity, params.opacity);
}
