// Shared by the app's shaders (the host prepends it to each): an sRGB-encoded colour as linear
// light, for targets that store linear colour.

fn srgb_to_linear(c: vec3<f32>) -> vec3<f32> {
    let low = c / 12.92;
    let high = pow((c + vec3<f32>(0.055)) / 1.055, vec3<f32>(2.4));
    return select(high, low, c <= vec3<f32>(0.04045));
}
