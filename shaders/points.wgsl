// Map points drawn as instanced, anti-aliased discs: one quad per point, placed by the map's
// visible bounds over the rectangle egui sets as the viewport, so a hundred thousand points
// cost one draw call and no tessellation on the CPU.

struct View {
    // Map coordinates at the rectangle's bottom-left and top-right corners.
    low: vec2<f32>,
    high: vec2<f32>,
    // The rectangle's size in physical pixels.
    size: vec2<f32>,
    // 1 when the target stores linear colour (an sRGB format).
    linear_target: u32,
    // Physical pixels per point, to size the discs.
    pixels_per_point: f32,
};

@group(0) @binding(0) var<uniform> view: View;

struct Point {
    @location(0) place: vec2<f32>,
    @location(1) colour: vec4<f32>,
    // Radius in points.
    @location(2) radius: f32,
};

struct Varyings {
    @builtin(position) position: vec4<f32>,
    // Offset from the disc's centre, in physical pixels.
    @location(0) offset: vec2<f32>,
    @location(1) colour: vec4<f32>,
    @location(2) radius: f32,
};

@vertex
fn vs_main(@builtin(vertex_index) index: u32, point: Point) -> Varyings {
    var corners = array<vec2<f32>, 6>(
        vec2<f32>(-1.0, -1.0), vec2<f32>(1.0, -1.0), vec2<f32>(-1.0, 1.0),
        vec2<f32>(-1.0, 1.0), vec2<f32>(1.0, -1.0), vec2<f32>(1.0, 1.0),
    );
    // One pixel beyond the radius for the anti-aliased edge.
    let radius = point.radius * view.pixels_per_point;
    let offset = corners[index] * (radius + 1.0);
    let centre = (point.place - view.low) / (view.high - view.low) * 2.0 - vec2<f32>(1.0);
    var out: Varyings;
    out.position = vec4<f32>(centre + offset * 2.0 / view.size, 0.0, 1.0);
    out.offset = offset;
    out.colour = point.colour;
    out.radius = radius;
    return out;
}

@fragment
fn fs_main(in: Varyings) -> @location(0) vec4<f32> {
    let coverage = clamp(in.radius + 0.5 - length(in.offset), 0.0, 1.0);
    if coverage <= 0.0 {
        discard;
    }
    var rgb = in.colour.rgb;
    if view.linear_target == 1u {
        rgb = srgb_to_linear(rgb);
    }
    let alpha = in.colour.a * coverage;
    // Premultiplied, as egui blends.
    return vec4<f32>(rgb * alpha, alpha);
}
